"""Published output schemas: equivalent to the models' own, in the form clients validate fast.

Every client that follows the spec validates each structured result against the tool's
``outputSchema``; the official Python SDK does it with ``jsonschema`` on every call. The schema is
published with references inlined and ``X | None`` as a ``type`` list (``compact_schema``), which
must accept exactly what pydantic's original schema accepts.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from pydantic import BaseModel, TypeAdapter

from loist.mcp.schemas import (
    DeleteResult,
    LibraryPage,
    ResourceUris,
    SearchHitResult,
    SearchOutput,
    TrackLinks,
    compact_schema,
)
from loist.model import ArtworkInfo, AudioInfo, Source, Tags, Track
from tests.mcp.test_catalogue import list_tools

TRACK = Track(
    id=uuid.uuid4(),
    status="COMPLETED",
    source=Source(type="http_url", location="https://example.test/a.mp3"),
    tags=Tags(title="Hoppípolla", artist="Sigur Rós", genres=["Post-rock"], year=2005),
    audio=AudioInfo(format="mp3", duration_s=268.5, channels=2),
    artwork=ArtworkInfo(present=True, width=600, height=600),
    created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    updated_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
)
LINKS = TrackLinks(
    embed_url="https://m.test/embed/x",
    oembed_url="https://m.test/oembed?url=x",
    stream_url="https://m.test/audio/x/stream",
    thumbnail_url=None,
    waveform_url="https://m.test/audio/x/waveform.json",
    resources=ResourceUris(
        metadata="music-library://audio/x/metadata", stream="music-library://audio/x/stream", thumbnail=None,
        waveform="music-library://audio/x/waveform",
    ),
)
PAGE = SearchOutput(
    items=[SearchHitResult(track=TRACK, score=12.5, links=LINKS)],
    total=1,
    next_cursor=None,
    facets={"genre": {"post-rock": 1}},
)


def _mutations(instance: dict[str, Any]) -> list[dict[str, Any]]:
    """Valid and invalid variants of a search page: nulls, wrong types, unknown and missing fields."""
    out = []

    def variant(change: Any) -> None:
        doc = copy.deepcopy(instance)
        change(doc)
        out.append(doc)

    track = lambda d: d["items"][0]["track"]  # noqa: E731
    variant(lambda d: track(d)["tags"].update(title=None))  # nullable: valid
    variant(lambda d: track(d)["tags"].update(title=7))  # nullable string given an int
    variant(lambda d: track(d)["tags"].update(year="2005"))  # nullable int given a string
    variant(lambda d: track(d)["tags"].update(genres=None))  # not nullable
    variant(lambda d: track(d)["tags"].update(mood="calm"))  # additionalProperties: false
    variant(lambda d: track(d).update(status="LOST"))  # enum
    variant(lambda d: track(d).update(source=None))  # required object
    variant(lambda d: track(d)["audio"].update(duration_s=None))
    variant(lambda d: track(d)["artwork"].update(width=1.5))
    variant(lambda d: d["items"][0]["links"]["resources"].update(thumbnail=3))
    variant(lambda d: d["items"][0]["links"].pop("stream_url"))  # required
    variant(lambda d: d["items"][0].update(score="high"))
    variant(lambda d: d.update(facets=None))  # nullable map: valid
    variant(lambda d: d.update(facets={"genre": {"rock": "many"}}))
    variant(lambda d: d.update(total_relation="lt"))
    variant(lambda d: d.update(next_cursor=None, items=[]))
    return out


@pytest.mark.parametrize("model", [SearchOutput, LibraryPage, DeleteResult])
def test_compact_schema_is_valid_and_has_no_refs_or_null_branches(model: type[BaseModel]) -> None:
    original = TypeAdapter(model).json_schema()
    compact = compact_schema(original)
    Draft202012Validator.check_schema(compact)
    text = json.dumps(compact)
    assert "$ref" not in text and "$defs" not in text
    assert '{"type": "null"}' not in text
    assert len(text) < len(json.dumps(original))


def test_compact_schema_accepts_exactly_what_the_original_accepts() -> None:
    original = Draft202012Validator(TypeAdapter(SearchOutput).json_schema())
    compact = Draft202012Validator(compact_schema(TypeAdapter(SearchOutput).json_schema()))
    base = PAGE.model_dump(mode="json")
    assert original.is_valid(base) and compact.is_valid(base)
    verdicts = []
    for doc in _mutations(base):
        verdicts.append(original.is_valid(doc))
        assert compact.is_valid(doc) is verdicts[-1], doc
    assert True in verdicts and False in verdicts  # the variants exercise both outcomes


def test_compact_schema_keeps_what_it_cannot_merge() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"anyOf": [{"enum": ["a", "b"], "type": "string"}, {"type": "null"}]},  # enum rejects null
            "node": {"$ref": "#/$defs/Node"},
            "strict": {"$ref": "#/$defs/Leaf", "maxProperties": 1},  # a constraint beside $ref
            "default_is_data": {"type": "object", "default": {"$ref": "#/$defs/Leaf"}},
        },
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"next": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
            },
            "Leaf": {"type": "object", "properties": {"x": {"type": "integer"}}},
        },
    }
    compact = compact_schema(schema)
    props = compact["properties"]
    assert props["kind"] == schema["properties"]["kind"]
    assert props["strict"] == {"allOf": [schema["$defs"]["Leaf"]], "maxProperties": 1}
    assert props["default_is_data"] == schema["properties"]["default_is_data"]
    # A recursive definition keeps its reference and is published once.
    assert set(compact["$defs"]) == {"Node"}
    assert compact["$defs"]["Node"]["properties"]["next"]["anyOf"][0] == {"$ref": "#/$defs/Node"}
    validator = Draft202012Validator(compact)
    assert validator.is_valid({"node": {"next": {"next": None}}, "kind": None})
    assert not validator.is_valid({"node": {"next": {"next": 3}}})
    assert not validator.is_valid({"strict": {"x": 1, "y": 2}})


async def test_published_output_schemas_are_the_compact_form(tmp_path: Path) -> None:
    tools = {t.name: t for t in await list_tools(tmp_path)}
    schema = tools["search_library"].output_schema
    assert schema is not None
    assert schema == compact_schema(TypeAdapter(SearchOutput).json_schema())
    for tool in tools.values():
        assert tool.output_schema is not None
        assert "$ref" not in json.dumps(tool.output_schema), tool.name
