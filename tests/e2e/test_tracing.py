"""Traces and log correlation of a running ``loist serve``.

With ``OTEL_TRACES_EXPORTER=otlp`` the server exports spans over OTLP/HTTP to a collector this test
runs on loopback (the real exporter, decoded with the OTLP protobuf definitions): a server span per
request named by its route template and child of the caller's ``traceparent``, the MCP SDK's span
per call, a span per database statement, per storage operation and per ingest stage (among them
the URL fetch). Its JSON log lines carry the trace in Cloud Logging's field, and one access line
per request. Without any ``OTEL_*`` setting the log lines still carry the caller's trace.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.support.audio import AudioFactory
from tests.support.httpserver import LoopbackServer
from tests.support.polling import poll_until
from tests.support.served import serving

pytestmark = pytest.mark.e2e

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
PROJECT = "loist-test-project"


class Collector:
    """An OTLP/HTTP trace receiver: every span exported to ``/v1/traces``."""

    def __init__(self) -> None:
        self.spans: list[dict[str, object]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            collector.spans.append({
                                "name": span.name, "trace_id": span.trace_id.hex(),
                                "parent": span.parent_span_id.hex(),
                                "attributes": {a.key: _value(a.value) for a in span.attributes},
                            })
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def names(self) -> set[str]:
        return {str(span["name"]) for span in self.spans}


def _value(v: object) -> object:
    kind = v.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(v, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    found = Collector()
    thread = threading.Thread(target=found.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found.server.shutdown()
        found.server.server_close()


async def _ingest_and_search(base: str, audio_url: str) -> str:
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0))
    async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
        done = await client.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": audio_url}})
        assert not done.is_error, done
        assert not (await client.call_tool("search_library", {"query": "Traced"})).is_error
        return str(done.structured_content["track"]["id"])


EXPECTED = {
    "GET /embed/{track_id}", "POST /mcp", "tools/call process_audio_complete", "tools/call search_library",
    "ingest.fetch", "ingest.analyze", "ingest.store", "ingest.catalog", "storage.put_file", "SELECT sqlite",
}


def test_spans_reach_an_otlp_collector_and_logs_carry_the_trace(
    collector: Collector, tmp_path: Path, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    audio_url = http_server.file("/traced.mp3", audio_factory("mp3", tags={"title": "Traced"}).read_bytes())
    env = {
        "LOIST_DATA_DIR": str(tmp_path / "data"), "ALLOW_PRIVATE_URLS": "true", "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO", "GOOGLE_CLOUD_PROJECT": PROJECT, "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url, "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with serving(tmp_path, env) as served:
        track_id = asyncio.run(_ingest_and_search(served.base, audio_url))
        headers = {"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"}
        assert httpx.get(f"{served.base}/embed/{track_id}", headers=headers, timeout=10).status_code == 200
        poll_until(lambda: EXPECTED <= collector.names(), timeout_s=30,
                   what=f"spans {sorted(EXPECTED - collector.names())} exported")
    embed = next(s for s in collector.spans if s["name"] == "GET /embed/{track_id}")
    assert embed["trace_id"] == TRACE_ID and embed["parent"] == PARENT_SPAN  # the caller's trace continues
    assert embed["attributes"]["http.route"] == "/embed/{track_id}"
    assert embed["attributes"]["http.response.status_code"] == 200
    statements = [str(s["attributes"]["db.query.text"]) for s in collector.spans if "db.query.text" in s["attributes"]]
    assert any("?" in text for text in statements)  # placeholders...
    assert not any("Traced" in text or track_id in text for text in statements)  # ...never the values
    for span in collector.spans:  # no span carries the audio URL (it may hold a signed token)
        assert audio_url not in json.dumps(span["attributes"]), span["name"]
    lines = [json.loads(line) for line in served.stderr if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "loist.access"
              and line["httpRequest"]["requestUrl"] == f"/embed/{track_id}"]
    assert len(access) == 1, "one access line per request"
    assert access[0]["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"
    assert access[0]["httpRequest"]["status"] == 200 and access[0]["httpRequest"]["latency"].endswith("s")


def test_without_otel_log_lines_still_carry_the_callers_trace(tmp_path: Path) -> None:
    env = {"LOIST_DATA_DIR": str(tmp_path / "data"), "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "GCS_PROJECT_ID": PROJECT}
    cloud_trace = "105445aa7843bc8bf206b12000100000"  # pragma: allowlist secret
    with serving(tmp_path, env) as served, httpx.Client(base_url=served.base, timeout=10) as http:
        assert http.get("/health/live", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_SPAN}-01"}).status_code == 200
        assert http.get("/oembed", headers={"X-Cloud-Trace-Context": f"{cloud_trace}/1;o=1"}).status_code == 400
        assert http.get("/nope?token=s3cret").status_code == 404
    lines = [json.loads(line) for line in served.stderr if line.startswith("{")]
    access = {line["httpRequest"]["requestUrl"]: line for line in lines if line.get("logger") == "loist.access"}
    assert access["/health/live"]["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"
    assert access["/health/live"]["logging.googleapis.com/spanId"] == PARENT_SPAN
    assert access["/oembed"]["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{cloud_trace}"
    assert access["/oembed"]["httpRequest"]["status"] == 400
    assert "logging.googleapis.com/trace" not in access["/nope"]  # no caller trace, none invented
    assert not any("s3cret" in json.dumps(line) for line in lines), "the query string is never logged"
    assert not any(line.get("logger", "").startswith("uvicorn.access") for line in lines), "one access line, ours"
