"""The MCP resources: a track's metadata, stream and artwork, and a search.

URIs keep the names operators already use::

    music-library://audio/{id}/metadata      application/json   the track and its links
    music-library://audio/{id}/stream        application/json   the stable stream URL
                                                                (+ the bytes when <= 1 MiB)
    music-library://audio/{id}/thumbnail     image/jpeg         the artwork thumbnail
    music-library://audio/{id}/waveform      application/json   waveform peaks (waveform-data v2)
    music-library://library/search?q={query} application/json   search_library's first page

The stream resource points at ``{EMBED_BASE_URL}/audio/{id}/stream`` (never an expiring signed URL)
and describes what that route serves: the web rendition (AAC, ``audio/mp4``) once a track has one,
with its type and size, as the embed page's player is told.
Only small files are inlined: a resource read is one JSON-RPC message and a whole album in base64
would stall the client.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import MCPServer, ResourceSecurity

from loist.mcp.deps import Deps
from loist.mcp.schemas import TrackResult
from loist.mcp.tools import links_for, search_output
from loist.model import SearchRequest, Track
from loist.storage.base import BlobInfo

INLINE_LIMIT_BYTES = 1024 * 1024
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"


def _json(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


async def _read_blob(deps: Deps, key: str) -> bytes:
    def read() -> bytes:
        return b"".join(deps.library.iter_blob(key))

    return await deps.library.storage_pool.run(read)


async def stream_info(deps: Deps, track: Track) -> tuple[dict[str, Any], BlobInfo]:
    """The stream's description and the blob ``stream_url`` serves: the web rendition when the
    track has one (``Library.stream``, as the stream route and the embed page choose), so the type
    and size are those of what a player gets, not of the original file."""
    served = await deps.library.stream(track.id)
    rendition = served.key != track.blob_key
    info = {
        "id": str(track.id),
        "stream_url": deps.library.stream_url(track.id),
        "embed_url": deps.library.embed_url(track.id),
        "mime_type": served.content_type or track.audio.mime_type or OCTET_STREAM,
        "format": track.audio.format,
        "size_bytes": served.size,
        "duration_s": track.audio.duration_s,
        "rendition": rendition,
        "original_mime_type": track.audio.mime_type,
        "inline": 0 < served.size <= INLINE_LIMIT_BYTES,
        "inline_limit_bytes": INLINE_LIMIT_BYTES,
    }
    return info, served


async def stream_contents(deps: Deps, track_id: str) -> list[ReadResourceContents]:
    """The JSON description, plus a blob item with the served audio itself for small files."""
    track = await deps.library.get_playable(track_id)
    info, served = await stream_info(deps, track)
    out = [ReadResourceContents(content=_json(info), mime_type=JSON)]
    if info["inline"]:
        data = await _read_blob(deps, served.key)
        out.append(ReadResourceContents(content=data, mime_type=info["mime_type"]))
    return out


def register_resources(server: MCPServer, deps: Deps) -> None:
    @server.resource(
        "music-library://audio/{id}/metadata",
        name="track-metadata",
        title="Track metadata",
        mime_type=JSON,
    )
    async def track_metadata(id: str) -> str:  # noqa: A002 - the URI variable's name
        """A track's tags, technical properties, artwork and links, as JSON."""
        track = await deps.library.get(id)
        derivatives = await deps.library.derived.derivatives(track.id)
        return TrackResult(track=track, links=links_for(deps, track), derivatives=derivatives).model_dump_json(indent=2)

    @server.resource(
        "music-library://audio/{id}/stream",
        name="track-stream",
        title="Track stream",
        mime_type=JSON,
    )
    async def track_stream(id: str) -> str:  # noqa: A002
        """The track's stable stream URL (JSON); files up to 1 MiB also come back as a blob."""
        # The server's read_resource serves this URI through stream_contents (two items); this body
        # answers direct calls and keeps the template listed.
        track = await deps.library.get_playable(id)
        return _json((await stream_info(deps, track))[0])

    @server.resource(
        "music-library://audio/{id}/thumbnail",
        name="track-thumbnail",
        title="Track artwork",
        mime_type="image/jpeg",
    )
    async def track_thumbnail(id: str) -> bytes:  # noqa: A002
        """The track's artwork thumbnail (JPEG)."""
        info = await deps.library.thumbnail(id)
        return await _read_blob(deps, info.key)

    @server.resource(
        "music-library://audio/{id}/waveform",
        name="track-waveform",
        title="Track waveform",
        mime_type=JSON,
    )
    async def track_waveform(id: str) -> str:  # noqa: A002
        """The track's waveform peaks in the waveform-data JSON format version 2 (made in the
        background after ingest: NOT_FOUND, with the job's state, until then)."""
        track = await deps.library.get_playable(id)
        info = await deps.library.derived.waveform(track)
        return (await _read_blob(deps, info.key)).decode("utf-8")

    @server.resource(
        "music-library://library/search?q={query}",
        name="library-search",
        title="Search the library",
        mime_type=JSON,
        # Any string is a valid query, including ones that look like paths ("../", "/x").
        security=ResourceSecurity(exempt_params={"query"}),
    )
    async def library_search(query: str) -> str:
        """The first page (20 tracks) of search_library for a query, as JSON."""
        result = await deps.library.search(SearchRequest(query=query))
        return search_output(deps, result).model_dump_json(indent=2)
