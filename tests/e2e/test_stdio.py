"""The MCP server as desktop clients run it: ``python -m loist serve --transport stdio``, a subprocess.

The official client spawns it with ``LOIST_DATA_DIR`` pointing at a fresh folder (the embedded
SQLite catalog and local blob store, created on first use) and talks JSON-RPC over its stdin and
stdout. Anything else written to stdout would break the protocol, so every call here also proves
stdout stays clean.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_types import TextResourceContents

from tests.mcp.test_catalogue import TOOL_ORDER
from tests.mcp.test_tools import assert_error, assert_ok
from tests.support.audio import AudioFactory

pytestmark = pytest.mark.e2e

BASE_URL = "https://stdio.example.test"


def server_params(tmp_path: Path, **env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "loist", "serve", "--transport", "stdio"],
        env={
            "LOIST_DATA_DIR": str(tmp_path / "data"),
            "EMBED_BASE_URL": BASE_URL,
            "LOG_LEVEL": "WARNING",
            **env,
        },
        cwd=tmp_path,  # no stray .env is read
    )


async def test_stdio_subprocess_end_to_end(tmp_path: Path, audio_factory: AudioFactory) -> None:
    song = audio_factory("mp3", tags={"title": "Over Stdio", "artist": "Subprocess"}, artwork=True)
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with Client(server_params(tmp_path, SERVER_NAME="Stdio Jukebox"), read_timeout_seconds=60) as c:
        assert c.server_info is not None and c.server_info.name == "Stdio Jukebox"
        assert [t.name for t in (await c.list_tools()).tools] == TOOL_ORDER

        ingest = assert_ok(
            await c.call_tool(
                "process_audio_complete",
                {"source": {"type": "file", "path": str(song)}},
                progress_callback=on_progress,
            )
        )
        track_id = ingest["track"]["id"]
        assert ingest["track"]["tags"]["title"] == "Over Stdio"
        assert ingest["links"]["embed_url"] == f"{BASE_URL}/embed/{track_id}"

        fetched = assert_ok(await c.call_tool("get_audio_metadata", {"audioId": track_id}))
        assert fetched["track"]["audio"]["format"] == "mp3"

        metadata = await c.read_resource(f"music-library://audio/{track_id}/metadata")
        content = metadata.contents[0]
        assert isinstance(content, TextResourceContents)
        assert json.loads(content.text)["track"]["tags"]["artist"] == "Subprocess"

        updated = assert_ok(
            await c.call_tool("update_metadata", {"audioId": track_id, "fields": {"album": "Pipes"}})
        )
        assert updated["track"]["tags"]["album"] == "Pipes"

        page = assert_ok(await c.call_tool("list_library", {}))
        assert [i["track"]["id"] for i in page["items"]] == [track_id]

        health = assert_ok(await c.call_tool("health_check", {}))
        assert health["status"] == "ok" and health["transport"] == "stdio"

        assert_ok(await c.call_tool("delete_audio", {"audioId": track_id}))
        assert_error(await c.call_tool("get_audio_metadata", {"audioId": track_id}), "NOT_FOUND")
        with pytest.raises(MCPError) as caught:
            await c.read_resource(f"music-library://audio/{track_id}/metadata")
        assert caught.value.error.message.startswith("NOT_FOUND: ")

    assert progress[-4:] == ["reading tags", "storing", "cataloguing", "done"]
    assert (tmp_path / "data" / "loist.db").is_file()


async def test_stdio_validation_errors_keep_the_session_alive(tmp_path: Path) -> None:
    async with Client(server_params(tmp_path), read_timeout_seconds=60) as c:
        assert_error(
            await c.call_tool("get_audio_metadata", {"audioId": "nope"}), "INVALID_ARGUMENT", "audioId"
        )
        assert_error(
            await c.call_tool(
                "update_metadata", {"audioId": "00000000-0000-4000-8000-000000000000", "fields": {"x": 1}}
            ),
            "INVALID_ARGUMENT",
        )
        # Still serving after the failures.
        assert assert_ok(await c.call_tool("health_check", {}))["status"] == "ok"
