"""Keyset paging of a search: the sort keys, the search cursor, and the page's place after it.

Every sort orders by keys all in one direction, the last one unique (relevance: score, then
``created_at``, then the track's index key; other sorts: the sort column, then ``id``). A cursor carries the last row's keys,
so the next page starts strictly after them: no duplicates, no gaps, and a deep page costs as much
as the first. It also carries the search's fingerprint (a cursor from another search is refused),
the total of page one (later pages do not count again) and whether page one came from the typo pass
(later pages come from the same pass). The codec is the catalog's one (:mod:`loist.catalog.cursor`).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from loist.catalog.cursor import decode_cursor, encode_cursor, invalid_cursor, peek_cursor
from loist.catalog.schema import tracks
from loist.catalog.search.builder import Match, track_column
from loist.model import SearchRequest

SortKeys = list[tuple[sa.ColumnElement[Any], str]]  # (ORDER BY expression, how its value is encoded)


@dataclass(frozen=True)
class Position:
    """Where a cursor says the next page starts."""

    key: list[Any]  # the last row's sort key, encoded (see :func:`key_value`)
    total: int  # the total of page one
    capped: bool  # ... and whether it is a lower bound


def request_fingerprint(request: SearchRequest, order: str) -> str:
    material = json.dumps(
        [request.query, request.filters.model_dump(mode="json"), request.sort, order],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def encode_search_cursor(fingerprint: str, key: list[Any], total: int, fuzzy: bool, capped: bool = False) -> str:
    """The cursor: the last row's sort key, the search's fingerprint, the total of page one (and
    whether it is a lower bound), and whether page one came from the fuzzy pass (later pages must
    come from the same pass)."""
    return encode_cursor({"f": fingerprint, "k": key, "t": total, "z": int(fuzzy), "g": int(capped)})


def cursor_is_fuzzy(cursor: str | None) -> bool:
    """Peek at the pass flag; a bad cursor says no here and is rejected by :func:`decode_search_cursor`."""
    data = peek_cursor(cursor) if cursor else None
    return data is not None and data.get("z") == 1


def key_size(sort: str, has_text: bool) -> int:
    """How many values the sort key of ``sort`` has (see :func:`sort_keys`)."""
    return 3 if sort == "relevance" and has_text else 2


def decode_search_cursor(cursor: str, fingerprint: str, size: int) -> Position:
    data = decode_cursor(cursor)
    key, total, capped = data.get("k"), data.get("t"), data.get("g") == 1
    if not (isinstance(key, list) and len(key) == size and data.get("f") == fingerprint):
        raise invalid_cursor()
    if not (isinstance(total, int) and total >= 0):
        raise invalid_cursor()
    return Position(key, total, capped)


def sort_keys(dialect: str, sort: str, match: Match | None) -> SortKeys:
    """The ORDER BY columns (all in one direction, the last one unique) and how to encode them."""

    def text(column: str) -> sa.ColumnElement[Any]:
        expression = track_column(column)
        return expression.collate("C") if dialect == "postgresql" else expression

    if sort == "relevance" and match is None:
        sort = "added"
    if sort == "relevance":
        assert match is not None
        # Equal scores: the newest added first (the postings hold ``added`` in this order too).
        return [(match.score, "int"), (tracks.c.created_at, "datetime"), (match.rid, "int" if dialect == "sqlite" else "uuid")]
    keys: SortKeys
    if sort == "added":
        keys = [(tracks.c.created_at, "datetime")]
    elif sort in ("title", "artist", "album"):
        keys = [(text(f"search_{sort}"), "str")]
    elif sort == "year":
        keys = [(sa.func.coalesce(tracks.c.year, sa.literal_column("0")), "int")]
    else:  # duration
        keys = [(sa.func.coalesce(tracks.c.duration_s, sa.literal_column("0")), "float")]
    keys.append((tracks.c.id, "uuid"))
    return keys


def key_value(kind: str, value: Any) -> Any:
    """A sort key's value as the cursor carries it (JSON)."""
    if kind == "datetime":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.isoformat() if value.tzinfo else value.replace(tzinfo=UTC).isoformat()
    if kind == "uuid":
        return str(value)
    if kind == "float":
        return float(value or 0.0)
    if kind == "int":
        return int(value or 0)
    return value or ""


def cursor_key(keys: SortKeys, row: Mapping[str, Any]) -> list[Any]:
    """The cursor form of a page row's sort key (the row carries it as ``_k0``, ``_k1``...)."""
    return [key_value(kind, row[f"_k{index}"]) for index, (_, kind) in enumerate(keys)]


def bind_key(kind: str, value: Any) -> sa.ColumnElement[Any]:
    """A sort key's value read from a cursor, as a bound parameter (a malformed one: the cursor error)."""
    try:
        if kind == "datetime":
            return sa.literal(datetime.fromisoformat(value), tracks.c.created_at.type)
        if kind == "uuid":
            return sa.literal(uuid.UUID(value), sa.Uuid())
        if kind == "float":
            return sa.literal(float(value), sa.Float())
        if kind == "int":  # a score can pass 2**31 (several TYPO ranks): 64 bits
            return sa.literal(int(value), sa.BigInteger())
        if not isinstance(value, str):
            raise TypeError(value)
        return sa.literal(value, sa.Text())
    except (TypeError, ValueError) as exc:
        raise invalid_cursor() from exc


def after(keys: SortKeys, key: Sequence[Any], order: str) -> sa.ColumnElement[bool]:
    """The rows strictly after ``key`` (a cursor's) in the sort's direction."""
    left = sa.tuple_(*(expression for expression, _ in keys))
    right = sa.tuple_(*(bind_key(kind, value) for (_, kind), value in zip(keys, key, strict=True)))
    return left < right if order == "desc" else left > right
