"""What a client sees before calling anything: tools (order, annotations, schemas) and resources."""

from __future__ import annotations

from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from mcp import Client
from mcp_types import Tool

from loist.library.holder import LibraryHolder
from loist.mcp.server import create_mcp_server
from tests.mcp.conftest import make_settings

TOOL_ORDER = [
    "process_audio_complete",
    "ingest_folder",
    "get_audio_metadata",
    "search_library",
    "list_library",
    "update_metadata",
    "delete_audio",
    "get_embed_url",
    "health_check",
]

# name: (readOnly, destructive, idempotent, openWorld)
ANNOTATIONS = {
    "process_audio_complete": (False, False, True, True),
    "ingest_folder": (False, False, True, False),
    "get_audio_metadata": (True, False, True, False),
    "search_library": (True, False, True, False),
    "list_library": (True, False, True, False),
    "update_metadata": (False, True, True, False),
    "delete_audio": (False, True, True, False),
    "get_embed_url": (True, False, True, False),
    "health_check": (True, False, True, False),
}


def _no_library() -> LibraryHolder:
    """A holder nobody opens: a server that touches its library fails loudly."""
    return LibraryHolder(name="the library (listing must not touch it)")


async def list_tools(tmp_path: Path) -> list[Tool]:
    """tools/list from a server whose library must never be touched."""
    async with Client(create_mcp_server(make_settings(tmp_path), _no_library())) as c:
        return (await c.list_tools()).tools


async def test_tools_are_listed_in_a_stable_order(tmp_path: Path) -> None:
    first = [t.name for t in await list_tools(tmp_path)]
    second = [t.name for t in await list_tools(tmp_path)]
    assert first == TOOL_ORDER
    assert second == first


async def test_every_tool_has_annotations_description_and_object_schemas(tmp_path: Path) -> None:
    for tool in await list_tools(tmp_path):
        ann = tool.annotations
        assert ann is not None, tool.name
        got = (ann.read_only_hint, ann.destructive_hint, ann.idempotent_hint, ann.open_world_hint)
        assert got == ANNOTATIONS[tool.name], tool.name
        assert tool.description and len(tool.description) > 20, tool.name
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None and tool.output_schema["type"] == "object", tool.name
        Draft202012Validator.check_schema(tool.output_schema)
        Draft202012Validator.check_schema(tool.input_schema)


async def test_input_schemas_carry_the_constraints(tmp_path: Path) -> None:
    tools = {t.name: t for t in await list_tools(tmp_path)}
    audio_id = tools["get_audio_metadata"].input_schema["properties"]["audioId"]
    assert audio_id["format"] == "uuid"
    assert tools["get_audio_metadata"].input_schema["required"] == ["audioId"]
    limit = tools["list_library"].input_schema["properties"]["limit"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, 100, 20)
    search = tools["search_library"].input_schema["properties"]
    assert set(search) == {"query", "filters", "sort", "order", "limit", "cursor", "facets"}
    sort_values = set(search["sort"]["enum"])
    assert sort_values == {"relevance", "title", "artist", "album", "year", "duration", "added"}
    ingest = tools["process_audio_complete"].input_schema
    assert ingest["required"] == ["source"]
    defs = ingest["$defs"]
    assert set(defs["HttpUrlSource"]["properties"]) == {"type", "url", "headers", "filename", "mimeType"}
    assert "maxSizeMB" in defs["IngestOptions"]["properties"]
    patch = tools["update_metadata"].input_schema["$defs"]["TagsPatch"]
    assert patch["additionalProperties"] is False
    assert {"title", "artist", "genres", "year"} <= set(patch["properties"])


async def test_output_schema_names_the_track_fields(tmp_path: Path) -> None:
    tools = {t.name: t for t in await list_tools(tmp_path)}
    schema = tools["get_audio_metadata"].output_schema
    assert schema is not None
    assert set(schema["required"]) == {"track", "links"}
    track = schema["properties"]["track"]["properties"]
    assert {"id", "status", "tags", "audio", "artwork", "created_at"} <= set(track)
    ingest = tools["process_audio_complete"].output_schema
    assert ingest is not None and "processing_time_ms" in ingest["properties"]


async def test_resource_templates_are_listed(tmp_path: Path) -> None:
    async with Client(create_mcp_server(make_settings(tmp_path), _no_library())) as c:
        listed = (await c.list_resource_templates()).resource_templates
    templates = {t.uri_template: t for t in listed}
    assert set(templates) == {
        "music-library://audio/{id}/metadata",
        "music-library://audio/{id}/stream",
        "music-library://audio/{id}/thumbnail",
        "music-library://library/search?q={query}",
    }
    assert templates["music-library://audio/{id}/metadata"].mime_type == "application/json"
    assert templates["music-library://audio/{id}/thumbnail"].mime_type == "image/jpeg"


async def test_server_identifies_itself_from_settings(tmp_path: Path) -> None:
    server = create_mcp_server(make_settings(tmp_path, server_name="Team Jukebox"), _no_library())
    async with Client(server, mode="legacy") as c:
        assert c.server_info is not None
        assert c.server_info.name == "Team Jukebox"
        assert "process_audio_complete" in (c.instructions or "")


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_transport_defaults_to_settings(tmp_path: Path, transport: str) -> None:
    server = create_mcp_server(make_settings(tmp_path, server_transport=transport), _no_library())
    assert server.deps.transport == transport


async def test_server_without_a_library_opens_and_closes_its_own(tmp_path: Path) -> None:
    """The stdio case: the server's lifespan opens the library from settings and closes it on exit."""
    server = create_mcp_server(make_settings(tmp_path / "data"), transport="stdio")
    async with Client(server) as c:
        health = (await c.call_tool("health_check", {})).structured_content
        assert server.deps.holder.is_open
    assert health is not None and health["status"] == "ok"
    assert not server.deps.holder.is_open  # closed when the last client left
    assert (tmp_path / "data" / "loist.db").is_file()
