"""The MCP tools: thin typed wrappers over the library service.

Each tool validates its input (the schema does), calls exactly one library method and shapes the
answer with :mod:`loist.mcp.schemas`. Tools raise :class:`~loist.errors.LoistError` for anything a
caller should see; the server turns it into an ``isError`` result in one place
(:func:`loist.mcp.results.error_result`). The registration order below is the order of
``tools/list``, which clients and docs rely on.
"""

from __future__ import annotations

import html
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ResourceLink, ToolAnnotations
from pydantic import Field

from loist import __version__
from loist.errors import InvalidArgument, LoistError
from loist.mcp.app import UI_META
from loist.mcp.deps import Deps, metadata_uri, stream_uri, thumbnail_uri, waveform_uri
from loist.mcp.folder import register_folder_tool
from loist.mcp.progress import ProgressReporter
from loist.mcp.results import ok
from loist.mcp.schemas import (
    AudioId,
    DeleteResult,
    EmbedResult,
    HealthResult,
    IngestOptions,
    IngestResult,
    LibraryPage,
    ResourceUris,
    SearchHitResult,
    SearchOutput,
    Source,
    TrackLinks,
    TrackResult,
)
from loist.model import SearchFilters, SearchRequest, SearchResult, SortField, TagsPatch, Track

# Same size as the web app's oEmbed answer and twitter:player (loist.web.embed.PLAYER_WIDTH/HEIGHT).
EMBED_WIDTH = 480
EMBED_HEIGHT = 160

READ_ONLY = ToolAnnotations(
    readOnlyHint=True, destructiveHint=False, idempotentHint=True, openWorldHint=False
)


def links_for(deps: Deps, track: Track) -> TrackLinks:
    library = deps.library
    has_thumb = track.thumbnail_key is not None
    return TrackLinks(
        embed_url=library.embed_url(track.id),
        oembed_url=library.oembed_url(track.id),
        stream_url=library.stream_url(track.id),
        thumbnail_url=library.thumbnail_url(track),
        waveform_url=f"{library.settings.public_base_url}/audio/{track.id}/waveform.json",
        resources=ResourceUris(
            metadata=metadata_uri(track.id),
            stream=stream_uri(track.id),
            thumbnail=thumbnail_uri(track.id) if has_thumb else None,
            waveform=waveform_uri(track.id),
        ),
    )


def search_output(deps: Deps, result: SearchResult) -> SearchOutput:
    """A library search result as the tool and the search resource return it (hits with links)."""
    return SearchOutput(
        items=[
            SearchHitResult(track=hit.track, score=hit.score, links=links_for(deps, hit.track))
            for hit in result.items
        ],
        total=result.total,
        total_relation=result.total_relation,
        next_cursor=result.next_cursor,
        facets=result.facets,
    )


def file_path(raw: str) -> Path:
    """The file a ``file`` source names. A folder is refused with the tool that adds one: this tool's
    answer is one track and its links, ``ingest_folder``'s counts and each file's outcome."""
    path = Path(raw).expanduser()
    if path.is_dir():
        raise InvalidArgument(
            f"{raw} is a folder: process_audio_complete adds one file (one track and its links); "
            f"call ingest_folder with this path to add every audio file in it (as `loist ingest` does)",
            details={"path": raw, "kind": "folder"},
        )
    return path


def resource_links(track: Track) -> list[ResourceLink]:
    """``resource_link`` content items pointing at the track's resources."""
    title = track.tags.title or str(track.id)
    out = [
        ResourceLink(
            type="resource_link",
            uri=metadata_uri(track.id),
            name=f"{track.id}-metadata",
            title=f"Metadata: {title}",
            mime_type="application/json",
        ),
        ResourceLink(
            type="resource_link",
            uri=stream_uri(track.id),
            name=f"{track.id}-stream",
            title=f"Stream: {title}",
            mime_type="application/json",
        ),
    ]
    if track.thumbnail_key is not None:
        out.append(
            ResourceLink(
                type="resource_link",
                uri=thumbnail_uri(track.id),
                name=f"{track.id}-thumbnail",
                title=f"Artwork: {title}",
                mime_type="image/jpeg",
            )
        )
    return out


def register_tools(server: MCPServer, deps: Deps) -> None:
    """Every tool, in the order ``tools/list`` shows them."""
    _register_ingest(server, deps)
    register_folder_tool(server, deps)  # ingest_folder: second in tools/list
    _register_reading(server, deps)
    _register_editing(server, deps)
    _register_service(server, deps)


def _register_ingest(server: MCPServer, deps: Deps) -> None:
    settings = deps.settings

    @server.tool(
        title="Add audio to the library",
        annotations=ToolAnnotations(
            title="Add audio to the library",
            readOnlyHint=False,
            destructiveHint=False,
            idempotentHint=True,  # content-addressed: the same bytes give the same track
            openWorldHint=True,  # fetches arbitrary URLs
        ),
        meta=UI_META,
    )
    async def process_audio_complete(
        source: Annotated[Source, Field(description="Where the audio comes from.")],
        ctx: Context,
        options: IngestOptions | None = None,
    ) -> Annotated[CallToolResult, IngestResult]:
        """Fetch an audio file, read its tags, technical properties and artwork, store it and
        catalogue it. Returns the track with its embed URL and resource URIs. Sends progress
        notifications per stage (fetching, reading_tags, storing, cataloguing).

        `source` is `{"type": "http_url", "url": ...}`; `{"type": "file", "path": ...}` is accepted
        only when the server runs over stdio on your own machine."""
        started = time.perf_counter()
        max_mb = options.max_size_mb if options else None
        if max_mb is not None and max_mb > settings.max_file_size_mb:
            raise InvalidArgument(
                f"options.maxSizeMB={max_mb:g} exceeds this server's limit of {settings.max_file_size_mb:g} MB "
                "(MAX_FILE_SIZE_MB); ask for less or omit it"
            )
        reporter = ProgressReporter(ctx)
        library = deps.library
        if source.type == "file":
            if deps.transport != "stdio":
                raise InvalidArgument(
                    "file sources are only accepted when the server runs over stdio on your own machine; "
                    "over HTTP, give an http_url the server can fetch"
                )
            track = await library.ingest_file(file_path(source.path), progress=reporter)
        else:
            track = await library.ingest_url(
                source.url,
                headers=source.headers,
                filename=source.filename,
                mime_type=source.mime_type,
                max_size_mb=max_mb,
                progress=reporter,
            )
        await reporter.done()
        result = IngestResult(
            track=track,
            links=links_for(deps, track),
            processing_time_ms=round((time.perf_counter() - started) * 1000, 1),
        )
        return ok(result, resource_links(track))


def _register_reading(server: MCPServer, deps: Deps) -> None:
    @server.tool(title="Get a track's metadata", annotations=READ_ONLY, meta=UI_META)
    async def get_audio_metadata(audioId: AudioId) -> Annotated[CallToolResult, TrackResult]:  # noqa: N803
        """Get one track: tags, technical properties, artwork, status and its links."""
        track = await deps.library.get(audioId)
        derivatives = await deps.library.derived.derivatives(track.id)
        result = TrackResult(track=track, links=links_for(deps, track), derivatives=derivatives)
        return ok(result, resource_links(track))

    @server.tool(title="Search the library", annotations=READ_ONLY, meta=UI_META)
    async def search_library(
        query: Annotated[
            str,
            Field(
                max_length=100_000,
                description=(
                    'Free text plus optional operators: "quoted phrase", -excluded, field:value '
                    "(artist, album, title, genre, composer, label, format), ranges year:1990..1999, "
                    "duration:..4:30, added:-7d... Any string is valid; empty lists the library."
                ),
            ),
        ] = "",
        filters: SearchFilters | None = None,
        sort: SortField = "relevance",
        order: Literal["asc", "desc"] | None = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
        cursor: Annotated[
            str | None, Field(max_length=4096, description="`next_cursor` of the previous page.")
        ] = None,
        facets: Annotated[bool, Field(description="Also count matches by genre, format and decade.")] = False,
    ) -> Annotated[CallToolResult, SearchOutput]:
        """Search the library: ranked full text with filters, sorting and cursor pagination."""
        request = SearchRequest(
            query=query,
            filters=filters or SearchFilters(),
            sort=sort,
            order=order,
            limit=limit,
            cursor=cursor,
            facets=facets,
        )
        return ok(search_output(deps, await deps.library.search(request)))

    @server.tool(title="List the library", annotations=READ_ONLY)
    async def list_library(
        cursor: Annotated[
            str | None, Field(max_length=4096, description="`next_cursor` of the previous page.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=100)] = 20,
    ) -> Annotated[CallToolResult, LibraryPage]:
        """List tracks, newest first, one page at a time."""
        page = await deps.library.list(cursor=cursor, limit=limit)
        items = [TrackResult(track=t, links=links_for(deps, t)) for t in page.items]
        return ok(LibraryPage(items=items, next_cursor=page.next_cursor))


def _register_editing(server: MCPServer, deps: Deps) -> None:
    @server.tool(
        title="Update a track's tags",
        annotations=ToolAnnotations(
            readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False
        ),
    )
    async def update_metadata(
        audioId: AudioId,  # noqa: N803
        fields: Annotated[
            TagsPatch, Field(description="Tags to change; null clears a field; others are kept.")
        ],
    ) -> Annotated[CallToolResult, TrackResult]:
        """Change a track's tags (title, artist, album, genres, year, ...). Only tags can change."""
        changes: dict[str, Any] = fields.model_dump(exclude_unset=True)
        if not changes:
            raise InvalidArgument('fields is empty: give at least one tag to change, e.g. {"title": "..."}')
        track = await deps.library.update_tags(audioId, changes)
        return ok(TrackResult(track=track, links=links_for(deps, track)), resource_links(track))

    @server.tool(
        title="Delete a track",
        annotations=ToolAnnotations(
            readOnlyHint=False, destructiveHint=True, idempotentHint=True, openWorldHint=False
        ),
    )
    async def delete_audio(audioId: AudioId) -> Annotated[CallToolResult, DeleteResult]:  # noqa: N803
        """Delete a track: its catalogue entry, its audio and its artwork. Cannot be undone."""
        track = await deps.library.delete(audioId)
        return ok(DeleteResult(deleted=True, id=track.id, track=track))


def _register_service(server: MCPServer, deps: Deps) -> None:
    settings = deps.settings

    @server.tool(title="Get a track's embed player", annotations=READ_ONLY)
    async def get_embed_url(audioId: AudioId) -> Annotated[CallToolResult, EmbedResult]:  # noqa: N803
        """Get the public player URL of a track, its oEmbed URL and a ready-to-paste iframe."""
        track = await deps.library.get(audioId)
        return ok(embed_result(deps, track.id, track.tags.title))

    @server.tool(title="Check server health", annotations=READ_ONLY)
    async def health_check() -> Annotated[CallToolResult, HealthResult]:
        """Report whether the database and storage are reachable, and the server's version."""
        try:
            checks = await deps.library.health()
        except LoistError as exc:
            checks = {"ok": False, "error": exc.to_dict()}
        result = HealthResult(
            status="ok" if checks.get("ok") is True else "degraded",
            server=settings.server_name,
            version=__version__,
            transport=deps.transport,
            checks=checks,
        )
        return ok(result)


def embed_result(deps: Deps, track_id: uuid.UUID, title: str | None) -> EmbedResult:
    embed = deps.library.embed_url(track_id)
    label = html.escape(title or "Audio player", quote=True)
    iframe = (
        f'<iframe src="{html.escape(embed, quote=True)}" width="{EMBED_WIDTH}" height="{EMBED_HEIGHT}" '
        f'title="{label}" frameborder="0" scrolling="no" loading="lazy" '
        f'allow="autoplay; encrypted-media" style="border:0;max-width:100%"></iframe>'
    )
    return EmbedResult(
        id=track_id,
        embed_url=embed,
        oembed_url=deps.library.oembed_url(track_id),
        stream_url=deps.library.stream_url(track_id),
        iframe_html=iframe,
        width=EMBED_WIDTH,
        height=EMBED_HEIGHT,
    )
