"""Durable background jobs: the ``jobs`` table (derived work per track: waveform, web rendition).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04

One row per (track, kind), deleted with its track (foreign key, ``ON DELETE CASCADE``). States:
``queued`` (due at ``run_at``), ``running`` (leased until ``lease_until``; a worker that dies leaves
it to be taken over once the lease expires), ``done`` (``result_key`` names the derived blob),
``dead`` (failed ``JOBS_MAX_ATTEMPTS`` times; ``last_error`` says why). Safe to re-run: the table
and its indexes are created only when missing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loist.catalog.schema import JOB_STATES, UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("jobs"):
        return
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("track_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("run_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime()),
        sa.Column("lease_token", sa.String(32)),
        sa.Column("last_error", sa.Text()),
        sa.Column("result_key", sa.Text()),
        sa.Column("result", sa.JSON()),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"], name="fk_jobs_track_id_tracks", ondelete="CASCADE"),
        sa.UniqueConstraint("track_id", "kind", name="uq_jobs_track_id_kind"),
        sa.CheckConstraint("state IN (" + ", ".join(f"'{state}'" for state in JOB_STATES) + ")", name="state"),
    )
    op.create_index("ix_jobs_state_run_at", "jobs", ["state", "run_at"])
    op.create_index("ix_jobs_result_key", "jobs", ["result_key"])


def downgrade() -> None:
    if sa.inspect(op.get_bind()).has_table("jobs"):
        op.drop_table("jobs")
