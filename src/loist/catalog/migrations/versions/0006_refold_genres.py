"""Genre keys written with the one text fold: ``track_genres.genre_norm`` and PostgreSQL's ``tracks.genre_keys``.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Up to 0005 the genre keys (filters, facets) were folded by ``loist.catalog.normalize.fold``, which
did not fold the letters NFKD does not split (``ø æ œ ł đ ð þ ı ß``), while the search index and the
query language used the fold that does: a track tagged "Søren" was found by ``genre:soren`` but not
by the filter ``genre = ["Soren"]``. There is now one fold (:mod:`loist.catalog.text`), and this
migration rewrites the keys written with the old one. The ``search_*`` token columns (and the
full-text indexes, vocabulary and postings built from them) were always written with the fold that
stays, so they do not change.

Only tracks with a non-ASCII character in their genres can change (both folds agree on ASCII), so
only those are read: their ``track_genres`` rows are recomputed from ``tracks.genres`` exactly as the
catalog writes them (the first spelling of a key wins: "Søren" and "Soren" on one track become one
row), and rewritten when they differ; on PostgreSQL ``genre_keys`` is set to the sorted keys in the
same transaction (once per track: the key triggers of 0004 are off while this runs, inside its
transaction). The downgrade does the same with the fold of 0005, kept below (frozen), so the
rows "Søren"/"søren" and "Soren"/"soren" come back. Safe to re-run.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from loist.catalog.text import genre_rows, normalize_genre

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 1000  # tracks per round trip
ROWS_PER_INSERT = 2000  # genre rows per INSERT (x 3 parameters)

_tracks = sa.table("tracks", sa.column("id", sa.Uuid()), sa.column("genres", sa.JSON()))
_track_genres = sa.table(
    "track_genres", sa.column("track_id", sa.Uuid()), sa.column("genre", sa.Text()), sa.column("genre_norm", sa.Text())
)
# Genres that may fold differently: JSON text holding an escaped (``\\u00f8``) or a raw non-ASCII character.
_CANDIDATES = {
    "sqlite": "SELECT id FROM tracks WHERE instr(genres, '\\u') > 0 OR length(genres) <> length(CAST(genres AS BLOB))",
    "postgresql": (
        "SELECT id FROM tracks WHERE strpos(genres::text, '\\u') > 0 "
        "OR octet_length(genres::text) <> length(genres::text)"
    ),
}


# PostgreSQL: the keys of one track as the catalog writes them, and the triggers of 0004 that also keep them.
_KEYS_SELECT = (
    'SELECT coalesce(array_agg(genre_norm ORDER BY genre_norm COLLATE "C"), \'{}\') FROM track_genres '
    "WHERE track_id = "
)
_KEY_TRIGGERS = ("track_genres_keys_insert", "track_genres_keys_delete")


def _fold_0005(text: str) -> str:
    """The genre key as revisions 0004 and 0005 wrote it (``loist.catalog.normalize``, frozen here)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def upgrade() -> None:
    _refold(op.get_bind(), normalize_genre)


def downgrade() -> None:
    _refold(op.get_bind(), _fold_0005)


def _refold(bind: Connection, key: Callable[[str], str]) -> None:
    """Rewrite the genre rows (and PostgreSQL genre keys) of every track whose keys ``key`` changes."""
    candidates = [_uuid(row[0]) for row in bind.exec_driver_sql(_CANDIDATES[bind.dialect.name])]
    if not candidates:
        return
    pg = bind.dialect.name == "postgresql"
    if pg:
        # The keys are set once per track below; the triggers of 0004 would rewrite each track twice
        # more (after the delete, after the insert). Off inside this transaction only (the lock this
        # takes keeps every other writer of track_genres waiting until it commits anyway).
        for trigger in _KEY_TRIGGERS:
            bind.exec_driver_sql(f"ALTER TABLE track_genres DISABLE TRIGGER {trigger}")
    for start in range(0, len(candidates), CHUNK):
        chunk = candidates[start : start + CHUNK]
        changed = _changed(bind, chunk, key)
        if changed:
            _rewrite(bind, changed)
    if pg:
        for trigger in _KEY_TRIGGERS:
            bind.exec_driver_sql(f"ALTER TABLE track_genres ENABLE TRIGGER {trigger}")


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _changed(bind: Connection, chunk: list[uuid.UUID], key: Callable[[str], str]) -> dict[uuid.UUID, list[tuple[str, str]]]:
    """The tracks of ``chunk`` whose genre rows ``key`` changes, with their new rows."""
    genres = dict(bind.execute(sa.select(_tracks.c.id, _tracks.c.genres).where(_tracks.c.id.in_(chunk))).all())
    stored: dict[uuid.UUID, set[tuple[str, str]]] = {track_id: set() for track_id in genres}
    rows = bind.execute(
        sa.select(_track_genres.c.track_id, _track_genres.c.genre, _track_genres.c.genre_norm).where(
            _track_genres.c.track_id.in_(chunk)
        )
    )
    for track_id, genre, norm in rows:
        stored.setdefault(track_id, set()).add((genre, norm))
    wanted = {track_id: genre_rows(list(values or []), key) for track_id, values in genres.items()}
    return {track_id: pairs for track_id, pairs in wanted.items() if set(pairs) != stored[track_id]}


def _rewrite(bind: Connection, changed: dict[uuid.UUID, list[tuple[str, str]]]) -> None:
    ids = list(changed)
    bind.execute(sa.delete(_track_genres).where(_track_genres.c.track_id.in_(ids)))
    params: list[dict[str, Any]] = [
        {"track_id": track_id, "genre": genre, "genre_norm": norm}
        for track_id, pairs in changed.items()
        for genre, norm in pairs
    ]
    for start in range(0, len(params), ROWS_PER_INSERT):
        bind.execute(sa.insert(_track_genres).values(params[start : start + ROWS_PER_INSERT]))
    if bind.dialect.name == "postgresql":
        # The keys exactly as the catalog writes them: sorted by code point (Python's order; "C").
        bind.execute(
            sa.text(
                f"UPDATE tracks SET genre_keys = ({_KEYS_SELECT}tracks.id) WHERE id = ANY(:ids) "  # noqa: S608  # nosec B608 (a module constant)
                f"AND genre_keys IS DISTINCT FROM ({_KEYS_SELECT}tracks.id)"
            ).bindparams(sa.bindparam("ids", type_=postgresql.ARRAY(sa.Uuid()))),
            {"ids": ids},
        )
