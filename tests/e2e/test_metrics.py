"""A running ``loist serve``: after real traffic, its metrics listener holds every family with counts
that match what happened, no label carries a track id or a query, and the public port has no
``/metrics``. On both catalog engines (the search family is labelled by engine)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from loist import __version__
from loist.catalog.migrate import upgrade
from tests.support.audio import AudioFactory
from tests.support.httpserver import LoopbackServer
from tests.support.pg import drop_pg_database, make_pg_database
from tests.support.served import Served, scrape, serving, value

pytestmark = pytest.mark.e2e

QUERIES = ("Quokka Parade", "zebra crossing", "nothing matches this")
FAMILIES = (
    "loist_http_requests_total", "loist_http_request_duration_seconds_bucket",
    "loist_mcp_tool_calls_total", "loist_mcp_tool_duration_seconds_count",
    "loist_ingest_total", "loist_ingest_duration_seconds_count", "loist_ingest_bytes_total",
    "loist_search_duration_seconds_count", "loist_storage_operations_total",
    "loist_db_pool_connections", "loist_db_pool_size", "loist_build_info",
    "process_resident_memory_bytes", "process_cpu_seconds_total",
)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def engine_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    env = {"LOIST_DATA_DIR": str(tmp_path / "data"), "ALLOW_PRIVATE_URLS": "true"}
    if request.param == "sqlite":
        yield "sqlite", env
        return
    url = make_pg_database()
    try:
        asyncio.run(upgrade(url))
        yield "postgresql", {**env, "DATABASE_URL": url}
    finally:
        drop_pg_database(url)


async def _mcp_traffic(base: str, audio_url: str, missing_url: str) -> tuple[str, int]:
    """One ingest that works, one whose URL is 404, a lookup of an unknown id, three searches and
    an embed URL; returns the track id and its size."""
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0))
    async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
        done = await client.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": audio_url}})
        assert not done.is_error, done
        track = done.structured_content["track"]
        failed = await client.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": missing_url}})
        assert failed.is_error and failed.structured_content["error"]["code"] == "FETCH_FAILED"
        missing = await client.call_tool("get_audio_metadata", {"audioId": str(uuid.uuid4())})
        assert missing.is_error and missing.structured_content["error"]["code"] == "NOT_FOUND"
        for query in QUERIES:
            assert not (await client.call_tool("search_library", {"query": query})).is_error
        assert not (await client.call_tool("get_embed_url", {"audioId": track["id"]})).is_error
    return track["id"], track["size_bytes"]


def _check_counts(samples: dict, engine: str, track_id: str, size: int) -> None:
    http = "loist_http_requests_total"
    assert value(samples, http, route="/embed/{track_id}", method="GET", status="200") == 2
    assert value(samples, http, route="/audio/{track_id}/stream", method="GET", status="206") == 1
    assert value(samples, http, route="unmatched", method="GET", status="404") == 2  # /nope and /metrics
    assert value(samples, http, route="/embed/{track_id}", method="GET", status="404") == 1
    assert value(samples, "loist_http_request_duration_seconds_count", route="/embed/{track_id}", method="GET") == 3
    tools = "loist_mcp_tool_calls_total"
    assert value(samples, tools, tool="process_audio_complete", outcome="ok") == 1
    assert value(samples, tools, tool="process_audio_complete", outcome="FETCH_FAILED") == 1
    assert value(samples, tools, tool="get_audio_metadata", outcome="NOT_FOUND") == 1
    assert value(samples, tools, tool="search_library", outcome="ok") == len(QUERIES)
    assert value(samples, tools, tool="get_embed_url", outcome="ok") == 1
    assert value(samples, "loist_mcp_tool_duration_seconds_count", tool="search_library") == len(QUERIES)
    assert value(samples, "loist_ingest_total", source="url", outcome="ok") == 1
    assert value(samples, "loist_ingest_total", source="url", outcome="FETCH_FAILED") == 1
    assert value(samples, "loist_ingest_bytes_total") == size
    for stage, times in (("fetch", 2), ("analyze", 1), ("store", 1), ("catalog", 1)):
        assert value(samples, "loist_ingest_duration_seconds_count", stage=stage) == times, stage
    assert value(samples, "loist_search_duration_seconds_count", engine=engine) == len(QUERIES)
    other = "postgresql" if engine == "sqlite" else "sqlite"
    assert value(samples, "loist_search_duration_seconds_count", engine=other) == 0
    storage = "loist_storage_operations_total"
    assert value(samples, storage, backend="local", op="put_file", outcome="ok") == 1
    assert value(samples, storage, backend="local", op="read_range", outcome="ok") >= 1  # the ranged stream
    assert value(samples, "loist_db_pool_size") >= 1
    assert value(samples, "loist_db_pool_connections", state="checked_out") == 0  # nothing in flight now
    assert value(samples, "loist_db_pool_connections", state="idle") >= 1
    assert value(samples, "loist_build_info", version=__version__) == 1


def _check_labels_bounded(samples: dict, secrets: tuple[str, ...]) -> None:
    values = {v for series in samples.values() for labels in series for _, v in labels}
    for secret in secrets:
        assert not any(secret.lower() in v.lower() for v in values), f"a label carries {secret!r}"


def test_a_scrape_after_traffic_counts_what_happened(
    engine_env: tuple[str, dict[str, str]], tmp_path: Path, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    engine, env = engine_env
    audio_url = http_server.file("/quokka.mp3", audio_factory("mp3", tags={"title": "Quokka Parade"}).read_bytes())
    missing_url = http_server.status("/gone.mp3", 404)
    with serving(tmp_path, env) as served:
        track_id, size = asyncio.run(_mcp_traffic(served.base, audio_url, missing_url))
        _web_traffic(served, track_id)
        samples = scrape(served.metrics)
    missing = [name for name in FAMILIES if name not in samples]
    assert not missing, f"families not emitted: {missing}"
    _check_counts(samples, engine, track_id, size)
    _check_labels_bounded(samples, (track_id, *QUERIES, "quokka", "gone.mp3", "127.0.0.1:"))


def _web_traffic(served: Served, track_id: str) -> None:
    with httpx.Client(base_url=served.base, timeout=10) as http:
        for _ in range(2):
            assert http.get(f"/embed/{track_id}").status_code == 200
        assert http.get(f"/audio/{track_id}/stream", headers={"Range": "bytes=0-3"}).status_code == 206
        assert http.get(f"/embed/{uuid.uuid4()}").status_code == 404
        assert http.get("/nope").status_code == 404
        assert http.get("/metrics").status_code == 404  # never on the public port
