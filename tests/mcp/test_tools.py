"""Every tool's success and failure paths, through the official MCP client, in memory."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp_types import CallToolResult

from loist.library.service import Library
from loist.mcp.server import LoistMCPServer
from loist.model import Track
from tests.mcp.conftest import BASE_URL
from tests.support.audio import AudioFactory

pytestmark = pytest.mark.asyncio(loop_scope="module")

MISSING = "00000000-0000-4000-8000-000000000000"


def assert_error(result: CallToolResult, code: str, *fragments: str) -> dict[str, Any]:
    """An isError result with the stable code as text prefix and structured error body."""
    assert result.is_error is True
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f"{code}: "), text
    assert "Traceback" not in text and 'File "' not in text
    assert result.structured_content is not None
    error = result.structured_content["error"]
    assert error["code"] == code
    for fragment in fragments:
        assert fragment in error["message"], error["message"]
    return error


def assert_ok(result: CallToolResult) -> dict[str, Any]:
    assert result.is_error is False, result.content
    assert result.structured_content is not None
    return result.structured_content


# --- get_audio_metadata ---------------------------------------------------------------------------


async def test_get_audio_metadata_returns_track_links_and_resource_links(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    track = tracks["art"]
    async with Client(stdio_server) as c:
        result = await c.call_tool("get_audio_metadata", {"audioId": str(track.id)})
    data = assert_ok(result)
    assert data["track"]["id"] == str(track.id)
    assert data["track"]["tags"]["title"] == "Hoppípolla"
    assert data["track"]["tags"]["artist"] == "Sigur Rós"
    assert data["track"]["audio"]["format"] == "mp3"
    assert data["track"]["artwork"]["present"] is True
    links = data["links"]
    assert links["embed_url"] == f"{BASE_URL}/embed/{track.id}"
    assert links["stream_url"] == f"{BASE_URL}/audio/{track.id}/stream"
    assert links["thumbnail_url"] == f"{BASE_URL}/audio/{track.id}/thumbnail"
    assert links["resources"]["metadata"] == f"music-library://audio/{track.id}/metadata"
    kinds = [(item.type, getattr(item, "uri", None)) for item in result.content]
    assert kinds[0] == ("text", None)
    assert [uri for kind, uri in kinds[1:] if kind == "resource_link"] == [
        f"music-library://audio/{track.id}/metadata",
        f"music-library://audio/{track.id}/stream",
        f"music-library://audio/{track.id}/thumbnail",
    ]


async def test_track_without_artwork_has_no_thumbnail_link(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("get_audio_metadata", {"audioId": str(tracks["plain"].id)})
    data = assert_ok(result)
    assert data["links"]["thumbnail_url"] is None
    assert data["links"]["resources"]["thumbnail"] is None
    assert [item.type for item in result.content] == ["text", "resource_link", "resource_link"]


async def test_get_audio_metadata_unknown_id_is_not_found(stdio_server: LoistMCPServer) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("get_audio_metadata", {"audioId": MISSING})
    assert_error(result, "NOT_FOUND", MISSING)


@pytest.mark.parametrize("bad", ["not-a-uuid", "", "1234", "../../etc/passwd"])
async def test_malformed_audio_id_is_invalid_argument(stdio_server: LoistMCPServer, bad: str) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("get_audio_metadata", {"audioId": bad})
    assert_error(result, "INVALID_ARGUMENT", "audioId")


async def test_missing_required_argument_is_invalid_argument(stdio_server: LoistMCPServer) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("get_embed_url", {})
    assert_error(result, "INVALID_ARGUMENT", "audioId")


# --- list_library ---------------------------------------------------------------------------------


async def test_list_library_pages_newest_first_with_an_opaque_cursor(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    async with Client(stdio_server) as c:
        first = assert_ok(await c.call_tool("list_library", {"limit": 1}))
        assert len(first["items"]) == 1 and first["next_cursor"]
        second = assert_ok(await c.call_tool("list_library", {"limit": 1, "cursor": first["next_cursor"]}))
        everything = assert_ok(await c.call_tool("list_library", {"limit": 100}))
    ids = [item["track"]["id"] for item in everything["items"]]
    assert {str(tracks["art"].id), str(tracks["plain"].id)} <= set(ids)
    created = [item["track"]["created_at"] for item in everything["items"]]
    assert created == sorted(created, reverse=True)
    assert [first["items"][0]["track"]["id"], second["items"][0]["track"]["id"]] == ids[:2]
    assert everything["next_cursor"] is None


@pytest.mark.parametrize("limit", [0, 101, -5])
async def test_list_library_limit_out_of_range(stdio_server: LoistMCPServer, limit: int) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("list_library", {"limit": limit})
    assert_error(result, "INVALID_ARGUMENT", "limit")


async def test_list_library_garbage_cursor_is_invalid_argument(stdio_server: LoistMCPServer) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("list_library", {"cursor": "definitely-not-a-cursor"})
    assert_error(result, "INVALID_ARGUMENT")


# --- update_metadata ------------------------------------------------------------------------------


async def test_update_metadata_changes_tags_and_keeps_the_rest(
    stdio_server: LoistMCPServer, library: Library, audio_factory: AudioFactory
) -> None:
    track = await library.ingest_file(audio_factory("ogg", tags={"title": "Before", "artist": "Someone"}))
    async with Client(stdio_server) as c:
        result = await c.call_tool(
            "update_metadata",
            {
                "audioId": str(track.id),
                "fields": {"title": "After", "genres": ["Jazz", "Soul"], "year": 1971},
            },
        )
    data = assert_ok(result)
    assert data["track"]["tags"]["title"] == "After"
    assert data["track"]["tags"]["artist"] == "Someone"
    assert data["track"]["tags"]["genres"] == ["Jazz", "Soul"]
    stored = await library.get(track.id)
    assert (stored.tags.title, stored.tags.year, stored.tags.artist) == ("After", 1971, "Someone")


async def test_update_metadata_null_clears_a_tag(
    stdio_server: LoistMCPServer, library: Library, audio_factory: AudioFactory
) -> None:
    track = await library.ingest_file(audio_factory("opus", tags={"title": "Clear me", "album": "Gone"}))
    async with Client(stdio_server) as c:
        assert_ok(await c.call_tool("update_metadata", {"audioId": str(track.id), "fields": {"album": None}}))
    assert (await library.get(track.id)).tags.album is None


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"bogus": "x"}, "bogus"),
        ({"duration_s": 3}, "duration_s"),
        ({"year": "last year"}, "year"),
        ({"year": 99999}, "year"),
        ({"genres": "Rock"}, "genres"),
        ({"title": "x" * 5000}, "title"),
        ({}, "fields"),
    ],
)
async def test_update_metadata_rejects_bad_fields(
    stdio_server: LoistMCPServer, tracks: dict[str, Track], fields: dict[str, Any], fragment: str
) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("update_metadata", {"audioId": str(tracks["plain"].id), "fields": fields})
    assert_error(result, "INVALID_ARGUMENT", fragment)


async def test_update_metadata_unknown_field_names_the_allowed_ones(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool(
            "update_metadata", {"audioId": str(tracks["plain"].id), "fields": {"bpm": 120}}
        )
    error = assert_error(result, "INVALID_ARGUMENT", "fields.bpm: unknown field")
    assert "tag fields: title, artist, artists, album" in error["message"]
    assert "120" not in error["message"]  # the rejected value is not echoed


async def test_update_metadata_unknown_track(stdio_server: LoistMCPServer) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("update_metadata", {"audioId": MISSING, "fields": {"title": "x"}})
    assert_error(result, "NOT_FOUND")


# --- delete_audio ---------------------------------------------------------------------------------


async def test_delete_audio_removes_the_track_then_reports_not_found(
    stdio_server: LoistMCPServer, library: Library, audio_factory: AudioFactory
) -> None:
    track = await library.ingest_file(audio_factory("wav", tags={"title": "Doomed"}, duration=0.5))
    async with Client(stdio_server) as c:
        data = assert_ok(await c.call_tool("delete_audio", {"audioId": str(track.id)}))
        again = await c.call_tool("delete_audio", {"audioId": str(track.id)})
        lookup = await c.call_tool("get_audio_metadata", {"audioId": str(track.id)})
    assert data["deleted"] is True and data["id"] == str(track.id)
    assert data["track"]["tags"]["title"] == "Doomed"
    assert_error(again, "NOT_FOUND")
    assert_error(lookup, "NOT_FOUND")
    assert track.blob_key is not None and not library.store.exists(track.blob_key)


# --- get_embed_url --------------------------------------------------------------------------------


async def test_get_embed_url_gives_player_oembed_and_iframe(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    track = tracks["art"]
    async with Client(stdio_server) as c:
        data = assert_ok(await c.call_tool("get_embed_url", {"audioId": str(track.id)}))
    embed = f"{BASE_URL}/embed/{track.id}"
    assert data["embed_url"] == embed
    assert data["oembed_url"].startswith(f"{BASE_URL}/oembed?url=https%3A%2F%2F")
    assert data["stream_url"] == f"{BASE_URL}/audio/{track.id}/stream"
    assert f'src="{embed}"' in data["iframe_html"]
    assert f'width="{data["width"]}"' in data["iframe_html"]
    assert 'title="Hoppípolla"' in data["iframe_html"]


async def test_get_embed_url_unknown_track(stdio_server: LoistMCPServer) -> None:
    async with Client(stdio_server) as c:
        assert_error(await c.call_tool("get_embed_url", {"audioId": MISSING}), "NOT_FOUND")


# --- health_check ---------------------------------------------------------------------------------


async def test_health_check_reports_components(
    stdio_server: LoistMCPServer, hosted_server: LoistMCPServer
) -> None:
    async with Client(stdio_server) as c:
        data = assert_ok(await c.call_tool("health_check", {}))
    assert data["status"] == "ok"
    assert data["transport"] == "stdio"
    assert data["server"] == "Music Library MCP"
    assert data["checks"]["database"]["ok"] is True
    assert data["checks"]["storage"]["ok"] is True
    async with Client(hosted_server) as c:
        assert assert_ok(await c.call_tool("health_check", {}))["transport"] == "http"


async def test_health_check_degraded_when_storage_is_gone(mcp_settings: Any, tmp_path: Any) -> None:
    """A library whose blob folder cannot be used reports degraded, not an exception."""
    from loist.mcp.server import create_mcp_server
    from tests.mcp.conftest import make_settings

    blocker = tmp_path / "blobs"
    settings = make_settings(tmp_path / "data", storage_path=blocker)
    lib = await Library.open(settings)
    try:
        blocker.rmdir() if blocker.is_dir() else None
        blocker.write_text("not a folder")
        async with Client(create_mcp_server(settings, lib)) as c:
            data = assert_ok(await c.call_tool("health_check", {}))
    finally:
        await lib.close()
    assert data["status"] == "degraded"
    assert data["checks"]["storage"]["ok"] is False


# --- unknown tool and unexpected failures ---------------------------------------------------------


async def test_unknown_tool_is_an_error_result(stdio_server: LoistMCPServer) -> None:
    async with Client(stdio_server) as c:
        result = await c.call_tool("no_such_tool", {})
    assert_error(result, "INVALID_ARGUMENT", "no_such_tool")


async def test_unexpected_exception_is_generic_and_logged(
    mcp_settings: Any, library: Library, caplog: pytest.LogCaptureFixture
) -> None:
    from loist.mcp.server import create_mcp_server

    server = create_mcp_server(mcp_settings, library)

    async def explode() -> str:
        """A tool with a bug."""
        raise RuntimeError("secret internals: /etc/shadow at 0xdeadbeef")

    server.add_tool(explode)
    async with Client(server) as c:
        result = await c.call_tool("explode", {})
    error = assert_error(result, "INTERNAL")
    assert "secret" not in error["message"] and "RuntimeError" not in error["message"]
    assert any("explode" in r.getMessage() and r.exc_info for r in caplog.records)
