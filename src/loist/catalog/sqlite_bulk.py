"""The SQLite fast path of :meth:`Catalog.add_many` (bulk ingest's hot path).

SQLAlchemy's per-row parameter processing costs more than SQLite's own work for a 1,000-row batch,
so on SQLite the rows go to the driver as plain tuples, converted here exactly as SQLAlchemy's
SQLite types store them (``Uuid`` -> 32 hex digits, ``DateTime`` -> ``YYYY-MM-DD HH:MM:SS.ffffff``
in UTC, ``JSON`` -> ``json.dumps``, ``Boolean`` -> 0/1). The behavioural tests read these rows
back through SQLAlchemy on both dialects, which keeps the two encodings equal.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loist.catalog.rows import LIST_TAG_FIELDS
from loist.catalog.schema import ROW_COLUMNS, tracks
from loist.catalog.text import genre_rows

_INSERT_TRACKS = (  # column names come from schema.py, never from input
    f"INSERT INTO tracks ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))}) "  # noqa: S608 # nosec B608
    "ON CONFLICT (sha256) DO NOTHING"
)
_INSERT_GENRES = "INSERT INTO track_genres (track_id, genre, genre_norm) VALUES (?, ?, ?)"
_IN_CHUNK = 500


_row_values = itemgetter(*ROW_COLUMNS)
_UUID_AT = ROW_COLUMNS.index("id")
_JSON_AT = tuple(ROW_COLUMNS.index(name) for name in LIST_TAG_FIELDS)
_DATETIMES_AT = (ROW_COLUMNS.index("created_at"), ROW_COLUMNS.index("updated_at"))


def _utc_text(value: datetime) -> str:
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # Same text as SQLAlchemy's SQLite DATETIME (microseconds always present, so text order is
    # time order); isoformat is twice as fast as strftime.
    return value.replace(tzinfo=None).isoformat(" ", "microseconds")


def encode_row(row: dict[str, Any]) -> tuple[Any, ...]:
    """The positional parameters (``ROW_COLUMNS`` order) for one ``tracks`` row (``track_to_row``).

    Only the id, the JSON lists and the timestamps need converting; bools and numbers go to sqlite3 as they are.
    """
    values = list(_row_values(row))
    values[_UUID_AT] = values[_UUID_AT].hex
    for at in _JSON_AT:
        values[at] = json.dumps(values[at])
    for at in _DATETIMES_AT:
        values[at] = _utc_text(values[at])
    return tuple(values)


async def insert_rows(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert ``rows`` (skipping sha256 conflicts) and their genres; return the ids that went in."""
    params = [encode_row(row) for row in rows]
    result = await conn.exec_driver_sql(_INSERT_TRACKS, params)
    ids = [row["id"] for row in rows]
    if result.rowcount == len(rows):
        created = set(ids)
    else:  # some were duplicates: ask which ids made it
        created = set()
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            found = await conn.execute(sa.select(tracks.c.id).where(tracks.c.id.in_(chunk)))
            created.update(found.scalars().all())
    genre_params = [
        (row["id"].hex, genre, norm)
        for row in rows
        if row["id"] in created
        for genre, norm in genre_rows(row["genres"])
    ]
    if genre_params:
        await conn.exec_driver_sql(_INSERT_GENRES, genre_params)
    return created
