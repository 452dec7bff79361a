"""MCP over streamable HTTP against a real uvicorn server running the whole app (``create_app``).

The server runs in its own thread and event loop on a socket bound here (port 0), so the test
knows the address before uvicorn starts; connections queue in the socket's backlog until it
accepts them, so nothing waits or sleeps. The official client talks to ``/mcp`` with and without
the bearer token; raw HTTP requests check the 401 answers and the Host/Origin allow-list.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import TextResourceContents

from loist.config import Settings
from loist.serve import uvicorn_config
from loist.web.app import create_app
from tests.mcp.conftest import make_settings
from tests.mcp.test_catalogue import TOOL_ORDER
from tests.mcp.test_tools import assert_error, assert_ok
from tests.support.audio import AudioFactory
from tests.support.httpserver import LoopbackServer
from tests.support.logwatch import watching_logs

pytestmark = pytest.mark.e2e

TOKEN = "e2e-token-" + "x" * 40
PUBLIC_HOST = "music.example.test"
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@contextmanager
def running(settings_for: Any) -> Iterator[str]:
    """Run ``create_app(settings)`` under uvicorn; yield its base URL (``http://127.0.0.1:PORT``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    settings: Settings = settings_for(port)
    config = uvicorn_config(create_app(settings), settings, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("http-open")
    with running(
        lambda port: make_settings(
            data, embed_base_url=f"https://{PUBLIC_HOST}", allow_private_urls=True, server_transport="http"
        )
    ) as base:
        yield base


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("http-locked")
    with running(
        lambda port: make_settings(
            data, embed_base_url=f"http://127.0.0.1:{port}", auth_enabled=True, bearer_token=TOKEN
        )
    ) as base:
        yield base


def with_token(url: str, token: str) -> Any:
    return streamable_http_client(
        url, http_client=create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    )


async def test_http_end_to_end_with_progress(
    open_server: str, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    data = audio_factory("wav", tags={"title": "Over HTTP", "artist": "Uvicorn"}, duration=12.0).read_bytes()
    url = http_server.file("/http.wav", data, content_type="audio/wav")
    progress: list[tuple[float, str]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message or ""))

    async with Client(f"{open_server}/mcp") as c:
        assert [t.name for t in (await c.list_tools()).tools] == TOOL_ORDER
        ingest = assert_ok(
            await c.call_tool(
                "process_audio_complete",
                {"source": {"type": "http_url", "url": url}},
                progress_callback=on_progress,
            )
        )
        track_id = ingest["track"]["id"]
        assert ingest["links"]["embed_url"] == f"https://{PUBLIC_HOST}/embed/{track_id}"

        got = assert_ok(await c.call_tool("get_audio_metadata", {"audioId": track_id}))
        assert got["track"]["tags"]["title"] == "Over HTTP"
        resource = await c.read_resource(f"music-library://audio/{track_id}/stream")
        info = resource.contents[0]
        assert isinstance(info, TextResourceContents) and '"inline": false' in info.text

        local = audio_factory("mp3")
        assert_error(
            await c.call_tool("process_audio_complete", {"source": {"type": "file", "path": str(local)}}),
            "INVALID_ARGUMENT",
            "stdio",
        )
        assert_error(
            await c.call_tool("delete_audio", {"audioId": "00000000-0000-4000-8000-000000000000"}),
            "NOT_FOUND",
        )
        health = assert_ok(await c.call_tool("health_check", {}))
        assert health["transport"] == "http" and health["status"] == "ok"

    values = [v for v, _ in progress]
    assert values == sorted(set(values)) and values[-1] == 100.0
    assert any(m.startswith("fetching") for _, m in progress)
    assert [m for _, m in progress if not m.startswith("fetching")] == [
        "reading tags",
        "storing",
        "cataloguing",
        "done",
    ]

    # The stream URL the tool returned is served by the same app (path part; the host is public).
    async with httpx.AsyncClient() as raw:
        audio = await raw.get(f"{open_server}/audio/{track_id}/stream", headers={"Range": "bytes=0-3"})
    assert audio.status_code == 206 and audio.content == data[:4]


async def test_public_host_is_accepted_and_foreign_hosts_are_not(open_server: str) -> None:
    async with httpx.AsyncClient() as raw:
        ours = await raw.post(f"{open_server}/mcp", json=INIT, headers={**MCP_HEADERS, "Host": PUBLIC_HOST})
        foreign = await raw.post(
            f"{open_server}/mcp", json=INIT, headers={**MCP_HEADERS, "Host": "evil.example"}
        )
        bad_origin = await raw.post(
            f"{open_server}/mcp", json=INIT, headers={**MCP_HEADERS, "Origin": "https://evil.example"}
        )
        good_origin = await raw.post(
            f"{open_server}/mcp", json=INIT, headers={**MCP_HEADERS, "Origin": f"https://{PUBLIC_HOST}"}
        )
    assert ours.status_code == 200
    assert foreign.status_code == 421
    assert bad_origin.status_code == 403
    assert good_origin.status_code == 200


async def test_locked_server_requires_the_bearer_token(locked_server: str) -> None:
    async with httpx.AsyncClient() as raw:
        missing = await raw.post(f"{locked_server}/mcp", json=INIT, headers=MCP_HEADERS)
        wrong = await raw.post(
            f"{locked_server}/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": "Bearer nope"}
        )
        public = await raw.get(f"{locked_server}/health/live")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert missing.json()["error"]["code"] == "UNAUTHORIZED"
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert public.status_code == 200  # public routes stay public

    async with Client(with_token(f"{locked_server}/mcp", TOKEN)) as c:
        assert [t.name for t in (await c.list_tools()).tools] == TOOL_ORDER
        assert assert_ok(await c.call_tool("health_check", {}))["status"] == "ok"
        assert_error(await c.call_tool("get_audio_metadata", {"audioId": "nope"}), "INVALID_ARGUMENT")


async def test_official_client_without_token_is_refused(locked_server: str) -> None:
    """The SDK surfaces the 401 as an error; the session never starts (no tool list leaks)."""
    listed: list[str] = []
    with pytest.raises(BaseExceptionGroup) as caught:
        async with Client(f"{locked_server}/mcp") as c:
            listed = [t.name for t in (await c.list_tools()).tools]
    assert caught.group_contains(MCPError, match="error response")
    assert listed == []


# --- what the stateless endpoint refuses, and clients that leave -----------------------------------
@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT"])
async def test_stateless_endpoint_answers_405_to_everything_but_post(open_server: str, method: str) -> None:
    """A bare GET used to open an event stream that never ended; the client's timeout bounds the
    old behaviour here, so on the old code this test fails instead of hanging."""
    async with httpx.AsyncClient(timeout=10.0) as raw:
        r = await raw.request(method, f"{open_server}/mcp", headers={"Accept": "text/event-stream, application/json"})
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_oversized_body_is_refused_before_it_is_held(open_server: str, declared: bool) -> None:
    """A body over MAX_BODY_BYTES gets 413 SIZE_EXCEEDED, whether Content-Length says so up front
    or the bytes of a chunked body do; the SDK used to read any body whole into memory."""
    from loist.web.mcp_route import MAX_BODY_BYTES

    payload = b"{" + b" " * MAX_BODY_BYTES + b"}"

    async def chunks() -> Any:
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    async with httpx.AsyncClient(timeout=10.0) as raw:
        r = await raw.post(f"{open_server}/mcp", headers=headers, content=payload if declared else chunks())
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "SIZE_EXCEEDED"


def _left_or_error(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or (record.name == "loist.web.mcp_route" and "left" in record.getMessage())


def _post_head(base: str, length: int) -> bytes:
    port = base.rsplit(":", 1)[1]
    return (f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json, text/event-stream\r\n"
            f"Content-Type: application/json\r\nMCP-Protocol-Version: 2025-06-18\r\nContent-Length: {length}\r\n\r\n"
            ).encode()


def test_client_leaving_mid_request_is_info_without_traceback(open_server: str) -> None:
    """The SDK logged this as ERROR "Error handling POST request" with a ClientDisconnect traceback."""
    with watching_logs(_left_or_error) as logs:
        with socket.create_connection(("127.0.0.1", int(open_server.rsplit(":", 1)[1]))) as sock:
            sock.sendall(_post_head(open_server, 1000) + b'{"jsonrpc": "2.0", ')  # then hang up
        assert logs.seen.wait(20), "nothing was logged about the client that left"
    left = [r for r in logs.records if _left_or_error(r)]
    assert [(r.levelno, r.exc_info) for r in left] == [(logging.INFO, None)], [r.getMessage() for r in left]
    assert "before sending its whole request" in left[0].getMessage()


def test_client_leaving_mid_response_is_info_without_traceback(open_server: str, http_server: LoopbackServer) -> None:
    """The client hangs up while its tool call is still downloading (the loopback source stalls)."""
    entered, release = threading.Event(), threading.Event()

    def stall(handler: Any) -> None:
        entered.set()
        release.wait(30)
        handler.send_error(404)

    url = http_server.route("/stall.wav", stall)
    call = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {
        "name": "process_audio_complete", "arguments": {"source": {"type": "http_url", "url": url}}}}).encode()
    try:
        with watching_logs(_left_or_error) as logs:
            with socket.create_connection(("127.0.0.1", int(open_server.rsplit(":", 1)[1]))) as sock:
                sock.settimeout(20)
                sock.sendall(_post_head(open_server, len(call)) + call)
                assert sock.recv(12) == b"HTTP/1.1 200"  # the event stream has started
                assert entered.wait(20), "the tool never started its download"
            assert logs.seen.wait(20), "nothing was logged about the client that left"
    finally:
        release.set()
    left = [r for r in logs.records if _left_or_error(r)]
    assert [(r.levelno, r.exc_info) for r in left] == [(logging.INFO, None)], [r.getMessage() for r in left]
    assert "before its response was complete" in left[0].getMessage()
