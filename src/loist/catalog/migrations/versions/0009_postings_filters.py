"""Search postings ordered for the ranking's tie-break and carrying the filter columns.

Revision ID: 0009
Revises: 0007
Create Date: 2026-12-04

``search_postings`` (0005) becomes ``(term, field, impact, added, track)`` plus ``year``, ``duration``
and ``format`` (``loist.catalog.search.postings``):

- ``added`` (the track's ``created_at``) in the key after ``impact``: among tracks that score the
  same, relevance now puts the newest added first (it was the track key: a random order on
  PostgreSQL), and a list read from its best posting down meets them in that order, so a word's page
  is still read from the front of the index;
- ``year``, ``duration`` and ``format`` (INCLUDEd in the key on PostgreSQL): a word with a year or
  duration range or a format is walked in the index, checking each entry, instead of scoring every
  match of the word first.

The SQLite update and delete triggers now delete a track's postings by key lookups: the old
``DELETE ... WHERE (term, field, impact, track) IN (SELECT ...)`` scanned the whole table on every
tag edit (~125 ms at 60,000 tracks).

The table is rebuilt (dropped, created, filled, keyed after the fill on PostgreSQL). Safe to re-run:
a table that already has the new shape only gets its triggers re-created. The downgrade restores the
shape of 0005.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from loist.catalog.search.postings import (
    POSTINGS_TABLE,
    SQLITE_POSTINGS_TRIGGERS,
    drop_postings,
    has_filter_columns,
    has_table,
    install_postings,
    postings_ddl,
)

revision: str = "0009"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if has_table(bind, POSTINGS_TABLE) and has_filter_columns(bind):
        # The table is right: re-create the triggers only.
        if bind.dialect.name == "sqlite":
            for name in SQLITE_POSTINGS_TRIGGERS:
                bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        for statement in postings_ddl(bind.dialect.name):
            bind.exec_driver_sql(statement)
        return
    drop_postings(bind)
    install_postings(bind)
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(f"ANALYZE {POSTINGS_TABLE}")


def downgrade() -> None:
    bind = op.get_bind()
    drop_postings(bind)
    install_postings(bind, legacy=True)
