"""The music-library:// resources, read through the official MCP client in memory."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, BlobResourceContents, TextResourceContents
from PIL import Image

from loist.config import Settings
from loist.library.jobs import Worker
from loist.library.service import Library
from loist.mcp.resources import INLINE_LIMIT_BYTES
from loist.mcp.server import LoistMCPServer
from loist.model import Track
from loist.web.app import create_app
from tests.mcp.conftest import BASE_URL
from tests.support.audio import AudioFactory
from tests.support.liveserver import live_server

pytestmark = pytest.mark.asyncio(loop_scope="module")

MISSING = "00000000-0000-4000-8000-000000000000"


async def test_metadata_resource_is_the_track_as_json(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    track = tracks["art"]
    uri = f"music-library://audio/{track.id}/metadata"
    async with Client(stdio_server) as c:
        result = await c.read_resource(uri)
    [content] = result.contents
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == "application/json"
    assert str(content.uri) == uri
    data = json.loads(content.text)
    assert data["track"]["id"] == str(track.id)
    assert data["track"]["tags"]["artist"] == "Sigur Rós"
    assert data["links"]["stream_url"] == f"{BASE_URL}/audio/{track.id}/stream"


async def test_stream_resource_of_a_small_file_carries_url_and_bytes(
    stdio_server: LoistMCPServer, library: Library, tracks: dict[str, Track]
) -> None:
    track = tracks["art"]
    assert track.size_bytes is not None and track.size_bytes <= INLINE_LIMIT_BYTES
    async with Client(stdio_server) as c:
        result = await c.read_resource(f"music-library://audio/{track.id}/stream")
    info, blob = result.contents
    assert isinstance(info, TextResourceContents) and info.mime_type == "application/json"
    data = json.loads(info.text)
    assert data["stream_url"] == f"{BASE_URL}/audio/{track.id}/stream"  # stable, never a signed URL
    assert data["inline"] is True and data["size_bytes"] == track.size_bytes
    assert isinstance(blob, BlobResourceContents)
    assert blob.mime_type == "audio/mpeg"
    assert track.blob_key is not None
    assert base64.b64decode(blob.blob) == b"".join(library.iter_blob(track.blob_key))


async def test_stream_resource_of_a_large_file_is_only_the_url(
    stdio_server: LoistMCPServer, library: Library, audio_factory: AudioFactory
) -> None:
    track = await library.ingest_file(audio_factory("wav", tags={"title": "Too big to inline"}, duration=8.0))
    assert track.size_bytes is not None and track.size_bytes > INLINE_LIMIT_BYTES
    async with Client(stdio_server) as c:
        result = await c.read_resource(f"music-library://audio/{track.id}/stream")
    [info] = result.contents
    assert isinstance(info, TextResourceContents)
    data = json.loads(info.text)
    assert data["inline"] is False
    assert data["stream_url"] == f"{BASE_URL}/audio/{track.id}/stream"


async def test_stream_resource_of_a_track_with_a_rendition_reports_what_is_served(
    stdio_server: LoistMCPServer, library: Library, mcp_settings: Settings, audio_factory: AudioFactory
) -> None:
    """Once an AIFF has its web rendition, /stream serves the rendition: the resource reports its
    type and size and inlines its bytes, and agrees with the stream route and the embed page."""
    track = await library.ingest_file(audio_factory("aiff", tags={"title": "Needs a rendition"}))
    worker = Worker(library.settings, library.derived)
    while await worker.run_once() is not None:
        pass
    key, rendition_type = await library.derived.playable(track)
    assert key != track.blob_key and rendition_type == "audio/mp4" != track.audio.mime_type
    async with Client(stdio_server) as c:
        result = await c.read_resource(f"music-library://audio/{track.id}/stream")
    info, blob = result.contents
    assert isinstance(info, TextResourceContents) and isinstance(blob, BlobResourceContents)
    data = json.loads(info.text)
    served = b"".join(library.iter_blob(key))
    assert data["mime_type"] == blob.mime_type == "audio/mp4"
    assert data["rendition"] is True and data["original_mime_type"] == track.audio.mime_type
    assert data["size_bytes"] == len(served) and base64.b64decode(blob.blob) == served

    settings = mcp_settings.model_copy(update={"embed_base_url": None})
    with live_server(lambda base: create_app(settings.model_copy(update={"embed_base_url": base}))) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            stream = await http.get(f"/audio/{track.id}/stream")
            page = await http.get(f"/embed/{track.id}")
    assert stream.headers["content-type"] == data["mime_type"] and stream.content == served
    assert f'<meta property="og:audio:type" content="{data["mime_type"]}">' in page.text


async def test_thumbnail_resource_is_a_jpeg(stdio_server: LoistMCPServer, tracks: dict[str, Track]) -> None:
    async with Client(stdio_server) as c:
        result = await c.read_resource(f"music-library://audio/{tracks['art'].id}/thumbnail")
    [content] = result.contents
    assert isinstance(content, BlobResourceContents)
    assert content.mime_type == "image/jpeg"
    image = Image.open(io.BytesIO(base64.b64decode(content.blob)))
    assert image.format == "JPEG"
    assert max(image.size) <= 600


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        (f"{MISSING}/metadata", MISSING),
        (f"{MISSING}/stream", MISSING),
        (f"{MISSING}/thumbnail", MISSING),
        ("not-a-uuid/metadata", "not-a-uuid"),
    ],
)
async def test_unknown_track_resources_are_not_found(
    stdio_server: LoistMCPServer, path: str, fragment: str
) -> None:
    async with Client(stdio_server) as c:
        with pytest.raises(MCPError) as caught:
            await c.read_resource(f"music-library://audio/{path}")
    assert caught.value.error.code == INVALID_PARAMS
    assert caught.value.error.message.startswith("NOT_FOUND: ")
    assert fragment in caught.value.error.message
    assert caught.value.error.data["error"]["code"] == "NOT_FOUND"


async def test_thumbnail_of_a_track_without_artwork_is_not_found(
    stdio_server: LoistMCPServer, tracks: dict[str, Track]
) -> None:
    async with Client(stdio_server) as c:
        with pytest.raises(MCPError) as caught:
            await c.read_resource(f"music-library://audio/{tracks['plain'].id}/thumbnail")
    assert caught.value.error.message.startswith("NOT_FOUND: ")
    assert "artwork" in caught.value.error.message


async def test_unknown_resource_uri_is_rejected(stdio_server: LoistMCPServer) -> None:
    async with Client(stdio_server) as c:
        with pytest.raises(MCPError) as caught:
            await c.read_resource("music-library://nothing/here")
    assert caught.value.error.code == INVALID_PARAMS
