"""Typed inputs and outputs of the MCP tools.

The SDK derives each tool's ``inputSchema`` and ``outputSchema`` from these models, so the
constraints written here (UUID format, limits, allowed values) are what clients see and what the
server enforces. Output models reuse :mod:`loist.model` unchanged: a track reaches an assistant
with exactly the field names the catalog stores. Input names keep the camelCase the operators'
existing clients already send (``audioId``, ``mimeType``, ``maxSizeMB``).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loist.model import SearchHit, Track

# --- inputs --------------------------------------------------------------------------------------

AudioId = Annotated[
    uuid.UUID,
    Field(description="The track's id (a UUID), as returned by process_audio_complete or search_library."),
]

class HttpUrlSource(BaseModel):
    """Audio fetched by the server from an http(s) URL (Dropbox, Drive, a CDN, a signed link)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    type: Literal["http_url"]
    url: str = Field(
        min_length=1, max_length=8192, description="An http:// or https:// URL the server can reach."
    )
    headers: dict[str, Annotated[str, Field(max_length=8192)]] | None = Field(
        default=None,
        max_length=32,
        description="Extra request headers sent with the first request only (e.g. Authorization for a private link).",
    )
    filename: str | None = Field(default=None, max_length=512, description="Original filename, if known.")
    mime_type: str | None = Field(
        default=None,
        alias="mimeType",
        max_length=255,
        description="Declared MIME type (a hint; the bytes decide).",
    )


class FileSource(BaseModel):
    """A file on the machine the server runs on. Accepted only over stdio (the user's own machine)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["file"]
    path: str = Field(
        min_length=1, max_length=4096, description="Absolute or working-directory-relative path."
    )


Source = Annotated[HttpUrlSource | FileSource, Field(discriminator="type")]


class IngestOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    max_size_mb: float | None = Field(
        default=None,
        alias="maxSizeMB",
        gt=0,
        description="Refuse files larger than this many MB; cannot exceed the server's MAX_FILE_SIZE_MB.",
    )


# --- outputs -------------------------------------------------------------------------------------


class ResourceUris(BaseModel):
    metadata: str
    stream: str
    thumbnail: str | None = Field(description="None when the track has no artwork.")


class TrackLinks(BaseModel):
    """Where the track can be played, shared and read again."""

    embed_url: str
    oembed_url: str
    stream_url: str
    thumbnail_url: str | None
    resources: ResourceUris


class TrackResult(BaseModel):
    """One track with its links (get_audio_metadata, update_metadata)."""

    track: Track
    links: TrackLinks


class IngestResult(TrackResult):
    """The catalogued track (process_audio_complete)."""

    processing_time_ms: float = Field(description="Wall time the server spent on this call.")


class DeleteResult(BaseModel):
    deleted: bool
    id: uuid.UUID
    track: Track = Field(description="The record as it was before deletion.")


class EmbedResult(BaseModel):
    id: uuid.UUID
    embed_url: str
    oembed_url: str
    stream_url: str
    iframe_html: str = Field(description="Ready-to-paste <iframe> of the player.")
    width: int
    height: int


class LibraryPage(BaseModel):
    items: list[TrackResult]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; None on the last page.")


class SearchHitResult(SearchHit):
    links: TrackLinks


class SearchOutput(BaseModel):
    items: list[SearchHitResult]
    total: int
    total_relation: Literal["eq", "gte"] = Field(
        default="eq", description='"eq": `total` is exact; "gte": at least `total` tracks match (counting stops at 1,000).'
    )
    next_cursor: str | None = None
    facets: dict[str, dict[str, int]] | None = None


class HealthResult(BaseModel):
    status: Literal["ok", "degraded"]
    server: str
    version: str
    transport: Literal["stdio", "http"]
    checks: dict[str, Any] = Field(description="Per-component status from the library service.")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorResult(BaseModel):
    """The ``structuredContent`` of every failed call (``isError: true``)."""

    error: ErrorBody
