"""PostgreSQL search side table: the vectors of COMPLETED tracks in narrow rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25

Ranking a broad match with ``ts_rank`` reads every match's ``search_vector``; in ``tracks`` that is
one ~800-byte row per match, spread over most of the table's pages. ``track_search`` (``id``,
``search_vector``; COMPLETED tracks only, kept by a trigger on ``tracks``, rows deleted by cascade)
holds the same vectors in ~250-byte rows with their own GIN index, so matching, ranking and
counting touch a third of the pages and need no status check. SQLite is unchanged (its FTS5 table
already is such an index).

Safe to re-run: the table, index, function and trigger are created only when missing, and the table
is refilled from ``tracks``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from loist.catalog.search.index import PG_SEARCH_TABLE, pg_refill_search_table, pg_search_table_ddl

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    for statement in pg_search_table_ddl():
        bind.exec_driver_sql(statement)
    pg_refill_search_table(bind)
    bind.exec_driver_sql(f"ANALYZE {PG_SEARCH_TABLE}")


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS tracks_track_search ON tracks")
    op.execute("DROP FUNCTION IF EXISTS loist_track_search()")
    op.execute(f"DROP TABLE IF EXISTS {PG_SEARCH_TABLE}")
