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

from loist.model import Derivative, SearchHit, Track

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
    waveform: str = Field(description="Waveform peaks (waveform-data JSON v2), once its background job has run.")


class TrackLinks(BaseModel):
    """Where the track can be played, shared and read again."""

    embed_url: str
    oembed_url: str
    stream_url: str
    thumbnail_url: str | None
    waveform_url: str = Field(description="Waveform peaks (waveform-data JSON v2); 404 until made.")
    resources: ResourceUris


class TrackResult(BaseModel):
    """One track with its links (get_audio_metadata, update_metadata)."""

    track: Track
    links: TrackLinks
    derivatives: dict[str, Derivative] = Field(
        default_factory=dict,
        description="Background work on the track (waveform, rendition): state, attempts, last error.",
    )


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


# --- output schemas as published -----------------------------------------------------------------

# Keywords that constrain only instances of their own type (JSON Schema 2020-12), and annotations
# that constrain nothing: a ``null`` instance passes any of them, which is what lets
# ``anyOf: [{"type": T, ...these}, {"type": "null"}]`` be written ``{"type": [T, "null"], ...}``.
_TYPE_SPECIFIC = frozenset(
    {
        "minLength", "maxLength", "pattern", "format", "contentEncoding", "contentMediaType",
        "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
        "properties", "required", "additionalProperties", "patternProperties", "propertyNames",
        "minProperties", "maxProperties", "dependentRequired",
        "items", "prefixItems", "minItems", "maxItems", "uniqueItems",
    }
)
_ANNOTATIONS = frozenset({"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"})
_SUBSCHEMA = frozenset(
    {"items", "additionalProperties", "propertyNames", "contains", "not", "if", "then", "else",
     "unevaluatedItems", "unevaluatedProperties", "contentSchema"}
)
_SUBSCHEMA_LISTS = frozenset({"anyOf", "allOf", "oneOf", "prefixItems"})
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "dependentSchemas"})
_NULL = {"type": "null"}
_DEFS_PREFIX = "#/$defs/"


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The same JSON Schema (it accepts exactly the same instances), written so it validates fast.

    pydantic spells ``X | None`` as ``anyOf: [X, {"type": "null"}]`` and every nested model as a
    ``$ref`` into ``$defs``. A client that checks each result against the tool's ``outputSchema``
    (the official Python SDK does, with ``jsonschema``) pays for every ``anyOf`` branch and every
    reference lookup on every field of every hit: for a 20-hit search page that was ~12 ms a call,
    more than the search itself. Here references are inlined (a recursive definition keeps its
    ``$ref`` and its ``$defs`` entry) and a nullable whose non-null branch uses only keywords that
    ignore ``null`` becomes a ``type`` list. Constraints are never dropped or loosened.
    """
    defs: dict[str, Any] = schema.get("$defs", {})
    kept: dict[str, Any] = {}

    def walk(node: Any, active: frozenset[str]) -> Any:
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        name = ref[len(_DEFS_PREFIX):] if isinstance(ref, str) and ref.startswith(_DEFS_PREFIX) else None
        if name is not None and name in defs:
            siblings = walk({k: v for k, v in node.items() if k != "$ref"}, active)
            if name in active:  # recursive: keep the reference, publish its definition
                if name not in kept:
                    kept[name] = {}  # reserved first, so a cycle ends here
                    kept[name] = walk(defs[name], active)
                return {"$ref": ref, **siblings}
            target = walk(defs[name], active | {name})
            if set(siblings) <= _ANNOTATIONS:
                return {**target, **siblings}
            return {"allOf": [target], **siblings}
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$defs":
                continue
            if key in _SUBSCHEMA:
                out[key] = walk(value, active)
            elif key in _SUBSCHEMA_LISTS and isinstance(value, list):
                out[key] = [walk(item, active) for item in value]
            elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
                out[key] = {k: walk(v, active) for k, v in value.items()}
            else:  # a value, not a schema: enum, const, default, required, ...
                out[key] = value
        return _merge_nullable(out)

    result = walk(schema, frozenset())
    if kept:
        result["$defs"] = kept
    return result


def _merge_nullable(node: dict[str, Any]) -> dict[str, Any]:
    branches = node.get("anyOf")
    if "type" in node or not isinstance(branches, list) or len(branches) != 2 or _NULL not in branches:
        return node
    other = branches[1] if branches[0] == _NULL else branches[0]
    if not isinstance(other, dict) or not isinstance(other.get("type"), str) or other["type"] == "null":
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    keys = set(other) - {"type"}
    if not keys <= _TYPE_SPECIFIC | _ANNOTATIONS or (keys & set(rest)) - _ANNOTATIONS:
        return node
    return {**other, **rest, "type": [other["type"], "null"]}
