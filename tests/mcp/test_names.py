"""Several artists through MCP: ``artists`` (every name) beside ``artist`` (their display form)."""

from __future__ import annotations

import pytest
from mcp import Client

from loist.library.service import Library
from loist.mcp.server import LoistMCPServer
from tests.mcp.test_tools import assert_ok
from tests.support.audio import AudioFactory

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_artists_are_edited_and_found_by_any_name(
    stdio_server: LoistMCPServer, library: Library, audio_factory: AudioFactory
) -> None:
    track = await library.ingest_file(audio_factory("flac", tags={"title": "Pas de deux", "artist": "Anouk"}))
    async with Client(stdio_server) as c:
        tools = {tool.name: tool for tool in (await c.list_tools()).tools}
        fields = tools["update_metadata"].input_schema["$defs"]["TagsPatch"]["properties"]
        assert {"artists", "album_artists", "composers"} <= set(fields)
        edited = assert_ok(await c.call_tool(
            "update_metadata", {"audioId": str(track.id), "fields": {"artists": ["Anouk", "Bertil Zwinger"]}}
        ))["track"]["tags"]
        assert (edited["artists"], edited["artist"]) == (["Anouk", "Bertil Zwinger"], "Anouk & Bertil Zwinger")
        found = assert_ok(await c.call_tool("search_library", {"query": "zwinger"}))
        assert [hit["track"]["id"] for hit in found["items"]] == [str(track.id)]
        # A client that knows only the display string sets one name (never split on "&").
        edited = assert_ok(await c.call_tool(
            "update_metadata", {"audioId": str(track.id), "fields": {"artist": "Simon & Garfunkel"}}
        ))["track"]["tags"]
        assert (edited["artists"], edited["artist"]) == (["Simon & Garfunkel"], "Simon & Garfunkel")
        assert assert_ok(await c.call_tool("search_library", {"query": "zwinger"}))["items"] == []
