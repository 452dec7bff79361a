"""search_library and the music-library://library/search resource, through the MCP client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mcp import Client
from mcp_types import TextContent, TextResourceContents

from loist.mcp.deps import search_uri
from loist.mcp.server import LoistMCPServer
from loist.model import Track
from tests.mcp.test_tools import assert_error, assert_ok

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def search(server: LoistMCPServer, **arguments: Any) -> dict[str, Any]:
    async with Client(server) as c:
        return assert_ok(await c.call_tool("search_library", arguments))


async def test_free_text_finds_the_track_with_score_and_links(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    result = await search(stdio_server, query="sigur ros")
    assert result["total"] >= 1
    top = result["items"][0]
    assert top["track"]["id"] == str(tracks["art"].id)
    assert top["score"] > 0
    assert top["links"]["embed_url"].endswith(f"/embed/{tracks['art'].id}")


async def test_result_text_is_the_structured_json_on_one_line(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("search_library", {"query": "sigur ros"})
    [content] = result.content
    assert isinstance(content, TextContent)
    assert "\n" not in content.text and "Sigur Rós" in content.text  # not indented, not \u-escaped
    assert json.loads(content.text) == result.structured_content


async def test_filters_combine_with_the_text(stdio_server: LoistMCPServer, tracks: dict[str, Track]) -> None:
    ambient = await search(stdio_server, filters={"genre": ["Ambient"]})
    assert [i["track"]["id"] for i in ambient["items"]] == [str(tracks["plain"].id)]
    flac_only = await search(stdio_server, query="tone", filters={"format": ["flac"]})
    assert {i["track"]["audio"]["format"] for i in flac_only["items"]} == {"flac"}


async def test_empty_query_lists_everything_with_facets(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    result = await search(stdio_server, query="", facets=True)
    assert {str(t.id) for t in tracks.values()} <= {i["track"]["id"] for i in result["items"]}
    assert result["total"] == len(result["items"])
    assert result["total_relation"] == "eq"  # exact: far below the counting bound
    assert result["facets"] is not None
    assert {"genre", "format", "decade"} <= set(result["facets"])
    assert result["facets"]["format"].get("mp3", 0) >= 1


async def test_cursor_pages_do_not_overlap(stdio_server: LoistMCPServer, tracks: dict[str, Track]) -> None:
    first = await search(stdio_server, sort="title", order="asc", limit=1)
    assert first["next_cursor"]
    second = await search(stdio_server, sort="title", order="asc", limit=1, cursor=first["next_cursor"])
    assert first["items"][0]["track"]["id"] != second["items"][0]["track"]["id"]
    titles = [first["items"][0]["track"]["tags"]["title"], second["items"][0]["track"]["tags"]["title"]]
    assert titles == sorted(titles)


@pytest.mark.parametrize(
    "query", ["(", '"', "&|!", "rock'n'roll", "🎵 ♫", "x" * 10_000, "-", "artist:", "year:..abc"]
)
async def test_any_string_is_a_valid_query(stdio_server: LoistMCPServer, query: str) -> None:
    result = await search(stdio_server, query=query)
    assert isinstance(result["total"], int)


@pytest.mark.parametrize(
    ("arguments", "fragment"),
    [
        ({"sort": "loudness"}, "sort"),
        ({"order": "sideways"}, "order"),
        ({"limit": 0}, "limit"),
        ({"limit": 1000}, "limit"),
        ({"filters": {"mood": ["happy"]}}, "filters"),
        ({"filters": {"year": {"min": "old"}}}, "filters"),
    ],
)
async def test_bad_arguments_are_invalid_argument(
    stdio_server: LoistMCPServer, arguments: dict[str, Any], fragment: str
) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("search_library", arguments)
    assert_error(result, "INVALID_ARGUMENT", fragment)


async def test_search_resource_returns_the_first_page(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    uri = search_uri("Sigur Rós")
    assert uri == "music-library://library/search?q=Sigur%20R%C3%B3s"
    async with Client(stdio_server) as c:
        result = await c.read_resource(uri)
    [content] = result.contents
    assert isinstance(content, TextResourceContents) and content.mime_type == "application/json"
    data = json.loads(content.text)
    assert data["items"][0]["track"]["id"] == str(tracks["art"].id)


@pytest.mark.parametrize("query", ["../../etc/passwd", "/absolute", "a&b=c", ""])
async def test_search_resource_accepts_any_query(stdio_server: LoistMCPServer, query: str) -> None:
    async with Client(stdio_server) as c:
        result = await c.read_resource(search_uri(query))
    assert isinstance(json.loads(result.contents[0].text)["total"], int)  # type: ignore[union-attr]
