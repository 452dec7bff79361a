"""Plain data types shared by every layer.

These names are the single vocabulary of the system: the catalog stores exactly these fields, the
MCP tools and the HTTP routes return exactly these fields (``model_dump(mode="json")``), the CLI
prints them. A field is never renamed on its way through a layer.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loist.errors import NotFound


class TrackStatus(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"


SourceType = Literal["http_url", "file", "synthetic", "import"]


# Tags that may name several people: the list (the truth) -> its display form (the names joined).
NAME_LISTS: dict[str, str] = {"artists": "artist", "album_artists": "album_artist", "composers": "composer"}
NAME_JOINER = " & "


def joined_names(names: list[str]) -> str | None:
    """The display form of several names (``["A", "B"]`` -> ``"A & B"``); None for none."""
    return NAME_JOINER.join(names) or None


def _pair_names(model: BaseModel, *, patch: bool) -> None:
    """Keep each name list and its display string in step: the list wins and sets the string (the
    names joined with " & "); a string given alone is one name (never split: "Simon & Garfunkel").
    A ``patch`` pairs only the fields it was given, so an edit changes both or neither."""
    given = model.model_fields_set
    for many, one in NAME_LISTS.items():
        names = getattr(model, many)
        if many in given or (not patch and names):
            setattr(model, one, joined_names(names or []))
        elif one in given or (not patch and getattr(model, one)):
            value = getattr(model, one)
            setattr(model, many, [value] if value else [])


class Tags(BaseModel):
    """Descriptive tags. Every field is optional; ``genres`` and the name lists may hold several values.

    ``artists``, ``album_artists`` and ``composers`` hold every name a file (or an edit) gives;
    ``artist``, ``album_artist`` and ``composer`` are their display form, always the names joined with
    " & " (kept for clients that read one string). Given only the string, the list is that one name.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    title: str | None = None
    artist: str | None = None
    artists: list[str] = Field(default_factory=list)
    album: str | None = None
    album_artist: str | None = None
    album_artists: list[str] = Field(default_factory=list)
    genres: list[str] = Field(default_factory=list)
    year: int | None = None
    track_number: int | None = None
    disc_number: int | None = None
    composer: str | None = None
    composers: list[str] = Field(default_factory=list)
    label: str | None = None
    isrc: str | None = None
    comment: str | None = None

    @model_validator(mode="after")
    def _names_in_step(self) -> Tags:
        _pair_names(self, patch=False)
        return self


TAG_FIELDS: tuple[str, ...] = tuple(Tags.model_fields)


MAX_TAG_TEXT = 1000  # longest text tag a client may set (comments: MAX_COMMENT_TEXT)
MAX_COMMENT_TEXT = 2000
MAX_NAMES = 32  # most names in one list (artists, album_artists, composers)
Name = Annotated[str, Field(min_length=1, max_length=MAX_TAG_TEXT)]


class TagsPatch(BaseModel):
    """Tag fields to change. Omitted fields keep their value; ``null`` clears one.

    The one set of limits for tag edits: the MCP tool's input schema is this model, and
    ``Library.update_tags`` validates every patch with it, whoever calls. Tags read from files are
    not held to these limits (a long comment in a file never blocks editing its title).
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    title: str | None = Field(default=None, max_length=MAX_TAG_TEXT)
    artist: str | None = Field(default=None, max_length=MAX_TAG_TEXT)
    artists: list[Name] | None = Field(default=None, max_length=MAX_NAMES)
    album: str | None = Field(default=None, max_length=MAX_TAG_TEXT)
    album_artist: str | None = Field(default=None, max_length=MAX_TAG_TEXT)
    album_artists: list[Name] | None = Field(default=None, max_length=MAX_NAMES)
    genres: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(default=None, max_length=32)
    year: int | None = Field(default=None, ge=1000, le=9999)
    track_number: int | None = Field(default=None, ge=0, le=10000)
    disc_number: int | None = Field(default=None, ge=0, le=1000)
    composer: str | None = Field(default=None, max_length=MAX_TAG_TEXT)
    composers: list[Name] | None = Field(default=None, max_length=MAX_NAMES)
    label: str | None = Field(default=None, max_length=MAX_TAG_TEXT)
    isrc: str | None = Field(default=None, max_length=32)
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_TEXT)

    @model_validator(mode="after")
    def _names_in_step(self) -> TagsPatch:
        _pair_names(self, patch=True)
        return self


class AudioInfo(BaseModel):
    """Technical properties read from the bytes."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    mime_type: str | None = None
    format: str | None = None  # mp3, flac, ogg, opus, m4a, wav, aiff, ...
    codec: str | None = None  # mp3, flac, vorbis, opus, aac, alac, pcm_s16le, ...
    duration_s: float | None = None
    channels: int | None = None
    sample_rate_hz: int | None = None
    bitrate_bps: int | None = None
    bit_depth: int | None = None


class ArtworkInfo(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    present: bool = False
    width: int | None = None  # of the original embedded picture
    height: int | None = None


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    type: SourceType
    location: str | None = None  # the URL or path as given
    original_filename: str | None = None


class Track(BaseModel):
    """One catalogued track (or a FAILED attempt to catalogue one)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    id: uuid.UUID
    status: TrackStatus
    error_code: str | None = None
    error_message: str | None = None
    attempts: int = 1
    source: Source
    sha256: str | None = None
    size_bytes: int | None = None
    audio: AudioInfo = Field(default_factory=AudioInfo)
    tags: Tags = Field(default_factory=Tags)
    artwork: ArtworkInfo = Field(default_factory=ArtworkInfo)
    blob_key: str | None = None
    thumbnail_key: str | None = None
    created_at: datetime
    updated_at: datetime


class TrackPage(BaseModel):
    """One page of a listing, newest first; ``next_cursor`` is opaque and None on the last page."""

    model_config = ConfigDict(defer_build=True)

    items: list[Track]
    next_cursor: str | None = None


def new_track_id() -> uuid.UUID:
    return uuid.uuid4()


def parse_track_id(value: uuid.UUID | str) -> uuid.UUID:
    """A track id from user input (a tool argument, a URL path segment, a command-line word).

    Surrounding whitespace is ignored; anything that is not a UUID is NOT_FOUND (there is no such
    track), never a validation error, so a probe cannot tell a malformed id from an unknown one.
    """
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise NotFound(f"no track with id {str(value)[:64]!r}") from None


# --- search (issue #4) ------------------------------------------------------------------------

SortField = Literal["relevance", "title", "artist", "album", "year", "duration", "added"]


class RangeFilter(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    min: float | None = None
    max: float | None = None


class SearchFilters(BaseModel):
    """Structured filters; they combine (AND) with the text query."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    genre: list[str] = Field(default_factory=list)  # any of
    year: RangeFilter | None = None
    duration: RangeFilter | None = None  # seconds
    format: list[str] = Field(default_factory=list)  # any of: mp3, flac, ...


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    query: str = ""
    filters: SearchFilters = Field(default_factory=SearchFilters)
    sort: SortField = "relevance"
    order: Literal["asc", "desc"] | None = None  # default: desc for relevance/added, asc otherwise
    limit: int = Field(default=20, ge=1, le=100)
    cursor: str | None = None
    facets: bool = False


class SearchHit(BaseModel):
    model_config = ConfigDict(defer_build=True)

    track: Track
    score: float


class SearchResult(BaseModel):
    model_config = ConfigDict(defer_build=True)

    items: list[SearchHit]
    total: int
    # "eq": ``total`` is exact; "gte": at least ``total`` tracks match (counting stops at a bound,
    # loist.catalog.search.tuning.COUNT_LIMIT, so a broad search does not pay for an exact count).
    total_relation: Literal["eq", "gte"] = "eq"
    next_cursor: str | None = None
    facets: dict[str, dict[str, int]] | None = None  # {"genre": {...}, "format": {...}, "decade": {...}}


# --- background jobs (derived work per track: loist.library.jobs) ------------------------------

JobState = Literal["queued", "running", "done", "dead"]
JobKind = Literal["waveform", "rendition"]


class Job(BaseModel):
    """One unit of derived work for a track, as the durable queue holds it."""

    model_config = ConfigDict(defer_build=True)

    id: int
    track_id: uuid.UUID
    kind: JobKind
    state: JobState
    attempts: int = 0
    run_at: datetime  # queued: due at; running: claimed at
    lease_until: datetime | None = None
    last_error: str | None = None
    result_key: str | None = None  # the derived blob (done)
    result: dict[str, Any] | None = None  # e.g. the rendition's mime_type
    created_at: datetime
    updated_at: datetime


class Derivative(BaseModel):
    """What a track's metadata says about one piece of derived work (``derivatives``)."""

    model_config = ConfigDict(defer_build=True)

    state: JobState
    attempts: int = 0
    last_error: str | None = None
    updated_at: datetime
