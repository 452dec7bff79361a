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
same transaction. The downgrade does the same with the fold of 0005, kept below (frozen), so the
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
    candidates: list[uuid.UUID] = [row[0] for row in bind.exec_driver_sql(_CANDIDATES[bind.dialect.name])]
    candidates = [value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)) for value in candidates]
    for start in range(0, len(candidates), CHUNK):
        chunk = candidates[start : start + CHUNK]
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
        changed = {track_id: pairs for track_id, pairs in wanted.items() if set(pairs) != stored[track_id]}
        if changed:
            _rewrite(bind, changed)


def _rewrite(bind: Connection, changed: dict[uuid.UUID, list[tuple[str, str]]]) -> None:
    bind.execute(sa.delete(_track_genres).where(_track_genres.c.track_id.in_(list(changed))))
    params: list[dict[str, Any]] = [
        {"track_id": track_id, "genre": genre, "genre_norm": norm}
        for track_id, pairs in changed.items()
        for genre, norm in pairs
    ]
    for start in range(0, len(params), ROWS_PER_INSERT):
        bind.execute(sa.insert(_track_genres).values(params[start : start + ROWS_PER_INSERT]))
    if bind.dialect.name == "postgresql":
        # The keys exactly as the catalog writes them (sorted in Python); the triggers of 0004 have kept
        # them in step with the rows already, so this rewrites a row only where their order differs.
        keys = sa.bindparam("keys", type_=postgresql.ARRAY(sa.Text()))
        bind.execute(
            sa.text(
                "UPDATE tracks SET genre_keys = :keys WHERE id = :id AND genre_keys IS DISTINCT FROM :keys"
            ).bindparams(keys, sa.bindparam("id", type_=sa.Uuid())),
            [{"id": track_id, "keys": sorted(norm for _, norm in pairs)} for track_id, pairs in changed.items()],
        )
