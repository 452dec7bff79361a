"""process_audio_complete: from a real loopback HTTP server and from a local file, with progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from loist.config import Settings
from loist.library.service import Library
from loist.mcp.server import LoistMCPServer, create_mcp_server
from tests.mcp.conftest import BASE_URL, make_settings
from tests.mcp.test_tools import assert_error, assert_ok
from tests.support.audio import AudioFactory
from tests.support.httpserver import LoopbackServer

pytestmark = pytest.mark.asyncio(loop_scope="module")

Progress = list[tuple[float, float | None, str | None]]


def recorder() -> tuple[Progress, Any]:
    seen: Progress = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    return seen, on_progress


async def test_ingest_from_url_reports_progress_per_stage(
    stdio_server: LoistMCPServer, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    data = audio_factory("wav", tags={"title": "Long Tone", "artist": "Loopback"}, duration=12.0).read_bytes()
    assert len(data) > 1_000_000  # several download chunks, so several fetching notifications
    url = http_server.file("/long.wav", data, content_type="audio/wav")
    seen, on_progress = recorder()
    async with Client(stdio_server) as c:
        result = await c.call_tool(
            "process_audio_complete",
            {"source": {"type": "http_url", "url": url}},
            progress_callback=on_progress,
        )
    out = assert_ok(result)
    track = out["track"]
    assert track["status"] == "COMPLETED"
    assert track["source"] == {"type": "http_url", "location": url, "original_filename": "long.wav"}
    assert track["size_bytes"] == len(data)
    assert track["tags"]["title"] == "Long Tone"
    assert track["audio"]["format"] == "wav"
    assert out["processing_time_ms"] > 0
    assert out["links"]["embed_url"] == f"{BASE_URL}/embed/{track['id']}"
    assert [i.type for i in result.content].count("resource_link") == 2  # no artwork, no thumbnail link

    values = [p for p, _, _ in seen]
    assert values == sorted(set(values)), "progress must strictly increase"
    assert all(total == 100.0 for _, total, _ in seen)
    messages = [m or "" for _, _, m in seen]
    fetching = [m for m in messages if m.startswith("fetching")]
    assert len(fetching) >= 2 and "MB of" in fetching[-1]
    stages = [m for m in messages if not m.startswith("fetching")]
    assert stages == ["reading tags", "storing", "cataloguing", "done"]
    assert values[-1] == 100.0


async def test_ingest_same_bytes_twice_gives_the_same_track(
    stdio_server: LoistMCPServer, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    data = audio_factory("flac", tags={"title": "Twice"}).read_bytes()
    first_url = http_server.file("/a.flac", data)
    second_url = http_server.file("/b.flac", data)
    async with Client(stdio_server) as c:
        first = assert_ok(
            await c.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": first_url}})
        )
        second = assert_ok(
            await c.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": second_url}})
        )
    assert first["track"]["id"] == second["track"]["id"]


async def test_ingest_passes_headers_and_filename(
    stdio_server: LoistMCPServer, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    data = audio_factory("mp3", tags={"title": "Private Link"}, artwork=True).read_bytes()
    url = http_server.file("/dl", data, content_type="application/octet-stream")
    source = {
        "type": "http_url",
        "url": url,
        "headers": {"Authorization": "Bearer share-token"},
        "filename": "private-link.mp3",
        "mimeType": "audio/mpeg",
    }
    async with Client(stdio_server) as c:
        result = await c.call_tool("process_audio_complete", {"source": source, "options": {"maxSizeMB": 5}})
    out = assert_ok(result)
    assert out["track"]["source"]["original_filename"] == "private-link.mp3"
    assert out["track"]["artwork"]["present"] is True
    assert [i.type for i in result.content].count("resource_link") == 3
    assert http_server.requests_to("/dl")[0].headers["authorization"] == "Bearer share-token"


async def test_ingest_local_file_over_stdio(
    stdio_server: LoistMCPServer, audio_factory: AudioFactory
) -> None:
    path = audio_factory("m4a", tags={"title": "From Disk"})
    seen, on_progress = recorder()
    async with Client(stdio_server) as c:
        result = await c.call_tool(
            "process_audio_complete",
            {"source": {"type": "file", "path": str(path)}},
            progress_callback=on_progress,
        )
    out = assert_ok(result)
    assert out["track"]["source"]["type"] == "file"
    assert out["track"]["tags"]["title"] == "From Disk"
    assert [m for _, _, m in seen] == ["reading tags", "storing", "cataloguing", "done"]


async def test_file_source_is_refused_over_http(
    hosted_server: LoistMCPServer, audio_factory: AudioFactory
) -> None:
    path = audio_factory("mp3", tags={"title": "Not over HTTP"})
    async with Client(hosted_server) as c:
        result = await c.call_tool("process_audio_complete", {"source": {"type": "file", "path": str(path)}})
    assert_error(result, "INVALID_ARGUMENT", "stdio")


async def test_missing_local_file(stdio_server: LoistMCPServer, tmp_path: Path) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool(
            "process_audio_complete", {"source": {"type": "file", "path": str(tmp_path / "x.mp3")}}
        )
    assert_error(result, "NOT_FOUND", "x.mp3")


async def test_max_size_above_server_limit_is_invalid(
    stdio_server: LoistMCPServer, mcp_settings: Settings
) -> None:
    source = {"type": "http_url", "url": "http://127.0.0.1:9/never-fetched.mp3"}
    async with Client(stdio_server) as c:
        result = await c.call_tool(
            "process_audio_complete", {"source": source, "options": {"maxSizeMB": 10_000}}
        )
    assert_error(result, "INVALID_ARGUMENT", "maxSizeMB", f"{mcp_settings.max_file_size_mb:g} MB")


async def test_file_larger_than_max_size_is_size_exceeded(
    stdio_server: LoistMCPServer, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    data = audio_factory("wav", duration=12.0).read_bytes()
    url = http_server.file("/big.wav", data)
    async with Client(stdio_server) as c:
        result = await c.call_tool(
            "process_audio_complete",
            {"source": {"type": "http_url", "url": url}, "options": {"maxSizeMB": 0.5}},
        )
    assert_error(result, "SIZE_EXCEEDED")


async def test_bytes_that_are_not_audio_are_invalid_format(
    stdio_server: LoistMCPServer, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    url = http_server.file("/notes.mp3", audio_factory.bad("text").read_bytes(), content_type="audio/mpeg")
    async with Client(stdio_server) as c:
        result = await c.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": url}})
    assert_error(result, "INVALID_FORMAT")


async def test_http_error_is_fetch_failed(stdio_server: LoistMCPServer, http_server: LoopbackServer) -> None:
    url = http_server.status("/gone.mp3", 404)
    async with Client(stdio_server) as c:
        result = await c.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": url}})
    assert_error(result, "FETCH_FAILED")


@pytest.mark.parametrize(
    "source",
    [
        {"type": "ftp", "url": "ftp://example.com/a.mp3"},
        {"type": "http_url"},
        {"type": "http_url", "url": ""},
        {"type": "http_url", "url": "https://example.com/a.mp3", "unexpected": 1},
        {"type": "file"},
        "just a string",
    ],
)
async def test_malformed_source_is_invalid_argument(stdio_server: LoistMCPServer, source: Any) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("process_audio_complete", {"source": source})
    assert_error(result, "INVALID_ARGUMENT", "source")


async def test_private_addresses_are_refused_by_default(
    tmp_path: Path, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    """With the SSRF guard on (the default), a loopback URL is URL_NOT_ALLOWED and never fetched."""
    settings = make_settings(tmp_path)
    library = await Library.open(settings)
    try:
        url = http_server.file("/inside.mp3", audio_factory("mp3").read_bytes())
        async with Client(create_mcp_server(settings, library, transport="http")) as c:
            result = await c.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": url}})
    finally:
        await library.close()
    assert_error(result, "URL_NOT_ALLOWED")
    assert http_server.requests_to("/inside.mp3") == []


async def test_progress_grows_when_the_size_is_unknown(
    stdio_server: LoistMCPServer, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    """No Content-Length (a close-delimited body): fetching progress still only grows, below 70."""
    data = audio_factory("wav", tags={"title": "No Length"}, duration=10.0).read_bytes()
    url = http_server.file("/nolength.wav", data, content_length=False)
    seen, on_progress = recorder()
    async with Client(stdio_server) as c:
        out = assert_ok(
            await c.call_tool(
                "process_audio_complete",
                {"source": {"type": "http_url", "url": url}},
                progress_callback=on_progress,
            )
        )
    assert out["track"]["size_bytes"] == len(data)
    fetching = [(v, m) for v, _, m in seen if (m or "").startswith("fetching")]
    assert len(fetching) >= 2
    assert all(" of " not in (m or "") for _, m in fetching)
    assert all(0 <= v < 70 for v, _ in fetching)
    values = [v for v, _, _ in seen]
    assert values == sorted(set(values))


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.mp3", "file:///etc/passwd", "https://user:pw@example.com/a.mp3"]
)
async def test_urls_that_cannot_be_fetched_are_url_not_allowed(
    stdio_server: LoistMCPServer, url: str
) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": url}})
    assert_error(result, "URL_NOT_ALLOWED")
