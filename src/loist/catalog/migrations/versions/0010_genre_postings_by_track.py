"""The genre postings by track (PostgreSQL): ``ix_search_postings_genre_track``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05

A partial index of ``search_postings`` on ``(track, term) INCLUDE (impact) WHERE field = 3`` (the
genre field): whether a track has a genre word is one index descent, where the primary key
``(term, field, impact, added, track)`` needs one per distinct impact of that word. The pair walk
(``loist.catalog.search.pairwalk``: ``genre:rock volcano``) probes it for each posting of the free
word it reads. About 86 MB at 1,000,000 tracks, built in ~5 s. SQLite: nothing (no pair walk).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from loist.catalog.search.postings import PG_GENRE_INDEX, PG_GENRE_INDEX_DDL

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(PG_GENRE_INDEX_DDL)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql(f"DROP INDEX IF EXISTS {PG_GENRE_INDEX}")
