"""The whole HTTP server: uvicorn + create_app, the official MCP client over streamable HTTP with and
without the bearer token, and ``loist serve`` as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from loist.config import Settings
from loist.web.app import create_app
from tests.support.audio import AudioFactory
from tests.support.liveserver import interrupt, live_server, wait_until_live

pytestmark = pytest.mark.e2e

TOKEN = "e2e-bearer-token-0123456789abcdef0123456789"


def _settings(data_dir: Path, base_url: str, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, embed_base_url=base_url, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def seeded_dir(tmp_path_factory: pytest.TempPathFactory, audio_factory: AudioFactory) -> tuple[Path, str]:
    """A data dir (SQLite + blobs) holding one track; returns (dir, track id)."""
    from loist.library.service import Library

    data_dir = tmp_path_factory.mktemp("e2e-http")

    async def seed() -> str:
        lib = await Library.open(_settings(data_dir, "http://127.0.0.1"))
        try:
            track = await lib.ingest_file(audio_factory("mp3", tags={"title": "Live", "artist": "E2E"}))
            return str(track.id)
        finally:
            await lib.close()

    return data_dir, asyncio.run(seed())


@pytest.fixture(scope="module")
def authed_server(seeded_dir: tuple[Path, str]) -> Iterator[str]:
    data_dir, _ = seeded_dir
    with live_server(lambda base: create_app(_settings(data_dir, base, auth_enabled=True, bearer_token=TOKEN))) as url:
        yield url


def _client(url: str, token: str | None, seen: list[int] | None = None) -> Client:
    """The official client over streamable HTTP; ``seen`` collects every HTTP status it got."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def record(response: httpx2.Response) -> None:
        if seen is not None:
            seen.append(response.status_code)

    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0), event_hooks={"response": [record]})
    return Client(streamable_http_client(f"{url}/mcp", http_client=http))


async def test_mcp_client_with_token(authed_server: str, seeded_dir: tuple[Path, str]) -> None:
    _, track_id = seeded_dir
    async with _client(authed_server, TOKEN) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert {"process_audio_complete", "get_audio_metadata", "get_embed_url", "health_check"} <= tools
        result = await client.call_tool("get_embed_url", {"audioId": track_id})
        assert not result.is_error
    embed_url = f"{authed_server}/embed/{track_id}"
    assert embed_url in str(result.structured_content)
    async with httpx.AsyncClient() as http:
        page = await http.get(embed_url)  # the URL the tool handed out works, without a token
    assert page.status_code == 200 and "og:audio" in page.text


@pytest.mark.parametrize("token", [None, "wrong-token"])
async def test_mcp_client_without_valid_token_is_refused(authed_server: str, token: str | None) -> None:
    seen: list[int] = []
    with pytest.raises(Exception):  # noqa: B017 - the SDK wraps the HTTP failure in its own error types
        async with _client(authed_server, token, seen) as client:
            await client.list_tools()
    assert seen and set(seen) == {401}  # refused at the door, before any MCP handling
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{authed_server}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                            headers={"Authorization": f"Bearer {token}"} if token else {})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="loist"')


async def test_public_routes_need_no_token(authed_server: str, seeded_dir: tuple[Path, str]) -> None:
    _, track_id = seeded_dir
    async with httpx.AsyncClient(base_url=authed_server) as http:
        for path in (f"/embed/{track_id}", f"/audio/{track_id}/stream", "/health/ready", "/.well-known/oembed.json"):
            assert (await http.get(path)).status_code == 200, path
        ranged = await http.get(f"/audio/{track_id}/stream", headers={"Range": "bytes=0-3"})
        assert ranged.status_code == 206 and len(ranged.content) == 4


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_loist_serve_process(seeded_dir: tuple[Path, str], tmp_path: Path, as_json: bool) -> None:
    """``python -m loist serve`` runs the app under uvicorn, announces where, and stops cleanly."""
    import socket

    data_dir, track_id = seeded_dir
    with socket.socket() as s:  # a free port for the child (released just before it binds)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOIST_", "DATABASE_", "DB_", "GCS_", "STORAGE_"))}
    env.update(LOIST_DATA_DIR=str(data_dir), EMBED_BASE_URL=f"http://127.0.0.1:{port}", LOG_LEVEL="INFO",
               HTTP_MAX_HEADERS="12")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port),
         *(["--json"] if as_json else [])],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_live(base, is_alive=lambda: proc.poll() is None)
        with httpx.Client(base_url=base) as http:
            assert http.get("/health/ready").json()["status"] == "ok"
            assert http.get(f"/embed/{track_id}").status_code == 200
            # the connection limits of the settings are the ones uvicorn applies (loist.web.protocol)
            crowded = http.get("/health/live", headers={f"X-{n}": "1" for n in range(12)})
            assert crowded.status_code == 431 and crowded.json()["error"]["code"] == "INVALID_ARGUMENT"
    finally:
        out, err = interrupt(proc)
    assert proc.returncode == 0, err
    assert "Application shutdown complete" in err  # graceful: the lifespan closed the library
    if as_json:  # every stderr line is one JSON object: the announcement, then log records
        lines = [json.loads(line) for line in err.splitlines() if line.strip()]
        serving = next(line for line in lines if line.get("event") == "serving")
        assert serving["mcp"] == f"http://127.0.0.1:{port}/mcp" and serving["listen"] == f"http://127.0.0.1:{port}"
        assert {"INFO"} <= {line.get("severity") for line in lines}
        return
    assert re.search(rf"listening on http://127\.0\.0\.1:{port}", err)
    assert f"http://127.0.0.1:{port}/mcp" in err


def _announcement(proc: subprocess.Popen[str], timeout_s: float = 90.0) -> dict[str, object]:
    """The ``serving`` JSON line of a ``loist serve --json`` child's stderr (bounded, by select)."""
    import selectors
    import time

    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stderr.readline()
            if not line:
                raise RuntimeError(f"loist serve exited before it announced (status {proc.wait()})")
            if line.startswith("{") and (event := json.loads(line)).get("event") == "serving":
                return event
    raise TimeoutError(f"loist serve announced nothing within {timeout_s}s")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_loist_serve_on_port_zero_announces_the_port_it_got(
    seeded_dir: tuple[Path, str], tmp_path: Path, workers: str
) -> None:
    """``--port 0`` takes a free port from the OS: that port is announced (not 0), answers, and is
    the one the server's derived links (EMBED_BASE_URL unset) name, in every worker."""
    data_dir, track_id = seeded_dir
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOIST_", "DATABASE_", "DB_", "GCS_", "STORAGE_", "EMBED_", "WEB_", "METRICS_"))}
    env.update(LOIST_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING", WEB_WORKERS=workers, METRICS_PORT="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", "0", "--json"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        serving = _announcement(proc)
        listen = str(serving["listen"])
        port = int(listen.rsplit(":", 1)[1])
        assert port != 0 and listen == f"http://127.0.0.1:{port}"
        assert serving["mcp"] == f"{listen}/mcp" and serving["reachable"] == [listen]
        wait_until_live(listen, is_alive=lambda: proc.poll() is None)
        with httpx.Client(base_url=listen, timeout=10) as http:
            assert http.get("/health/live").status_code == 200
            page = http.get(f"/embed/{track_id}")  # its og:audio and player links derive from the port
            assert page.status_code == 200
            assert f"{listen}/audio/{track_id}/stream" in page.text and ":0/" not in page.text
    finally:
        _, err = interrupt(proc)
    assert proc.returncode == 0, err
