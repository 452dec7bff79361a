"""Search: token columns, full-text indexes, fuzzy vocabulary, sort indexes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

- ``tracks.search_{title,artist,album,genre,composer,label}``: the tokens of each field, written by
  the catalog from :func:`loist.catalog.text.search_columns` (folding happens in Python, once, so
  both engines index the same tokens). Existing rows are backfilled here.
- SQLite: an FTS5 table ``tracks_fts`` kept in sync by triggers; a vocabulary ``search_vocab`` with
  an FTS5 ``trigram`` index for typo tolerance.
- PostgreSQL: a generated, weighted ``search_vector`` with a GIN index; ``search_vocab`` with a
  ``pg_trgm`` GIN index, kept by a trigger.
- B-tree indexes for the sort orders.

Safe to re-run: everything is created only when missing. A later migration that recreates
``tracks`` (SQLite batch mode) must call :func:`loist.catalog.search.index.rebuild_search_index`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loist.catalog.search.index import (
    FTS_TABLE,
    PG_VECTOR,
    SQLITE_TRIGGERS,
    VOCAB_TABLE,
    VOCAB_TRGM_TABLE,
    backfill_search_columns,
    pg_vector_expression,
    rebuild_search_index,
)
from loist.catalog.text import SEARCH_COLUMNS

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SORT_INDEXES: dict[str, tuple[str, str]] = {
    # name: (SQLite expression list, PostgreSQL expression list)
    "ix_tracks_search_title_id": ("search_title, id", 'search_title COLLATE "C", id'),
    "ix_tracks_search_artist_id": ("search_artist, id", 'search_artist COLLATE "C", id'),
    "ix_tracks_search_album_id": ("search_album, id", 'search_album COLLATE "C", id'),
    "ix_tracks_year_id": ("coalesce(year, 0), id", "coalesce(year, 0), id"),
    "ix_tracks_duration_id": ("coalesce(duration_s, 0), id", "coalesce(duration_s, 0), id"),
}


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    existing = {column["name"] for column in sa.inspect(bind).get_columns("tracks")}
    for column in SEARCH_COLUMNS.values():
        if column not in existing:
            op.add_column("tracks", sa.Column(column, sa.Text(), nullable=False, server_default=""))
    backfill_search_columns(bind)
    if dialect == "postgresql":
        if PG_VECTOR not in existing:
            bind.exec_driver_sql(  # not op.execute: the expression's ':1A' is no bind parameter
                f"ALTER TABLE tracks ADD COLUMN {PG_VECTOR} tsvector "
                f"GENERATED ALWAYS AS ({pg_vector_expression()}) STORED"
            )
        op.execute(f"CREATE INDEX IF NOT EXISTS ix_tracks_{PG_VECTOR} ON tracks USING gin ({PG_VECTOR})")
    for name, (sqlite_columns, pg_columns) in SORT_INDEXES.items():
        if dialect == "postgresql":
            # Partial: every search has "status = 'COMPLETED'", and then a count over a range is an
            # index-only scan. (SQLite's planner could not use a partial index there, see loist.catalog.search.builder.)
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON tracks ({pg_columns}) WHERE status = 'COMPLETED'")
        else:
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON tracks ({sqlite_columns})")
    rebuild_search_index(bind)


def downgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    for name in SORT_INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS tracks_search_vocab ON tracks")
        op.execute("DROP FUNCTION IF EXISTS loist_search_vocab()")
        op.execute(f"DROP TABLE IF EXISTS {VOCAB_TABLE}")
        op.execute(f"DROP INDEX IF EXISTS ix_tracks_{PG_VECTOR}")
        op.execute(f"ALTER TABLE tracks DROP COLUMN IF EXISTS {PG_VECTOR}")
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        for table in (FTS_TABLE, VOCAB_TRGM_TABLE, VOCAB_TABLE):
            op.execute(f"DROP TABLE IF EXISTS {table}")
    existing = {column["name"] for column in sa.inspect(bind).get_columns("tracks")}
    for column in SEARCH_COLUMNS.values():
        if column in existing:
            op.drop_column("tracks", column)
