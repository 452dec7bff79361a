"""Initial catalog: ``tracks`` and its ``track_genres`` child table.

Revision ID: 0001
Revises:
Create Date: 2026-11-25

Safe to re-run: every object is created only when missing (``IF NOT EXISTS``) and dropped only when
present, so a database that already has the tables (but lost ``alembic_version``) is adopted, not
broken.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_CHECK = "status IN ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED')"


def _inspector() -> sa.Inspector:
    return sa.inspect(op.get_bind())


def _create_index(name: str, table: str, columns: list[Any], **kwargs: Any) -> None:
    op.create_index(name, table, columns, if_not_exists=True, **kwargs)


def upgrade() -> None:
    inspector = _inspector()
    dialect = op.get_bind().dialect.name
    if not inspector.has_table("tracks"):
        op.create_table(
            "tracks",
            sa.Column("id", sa.Uuid(), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("error_code", sa.String(32)),
            sa.Column("error_message", sa.Text()),
            sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("1")),
            sa.Column("source_type", sa.String(16), nullable=False),
            sa.Column("source_location", sa.Text()),
            sa.Column("original_filename", sa.Text()),
            sa.Column("sha256", sa.String(64)),
            sa.Column("size_bytes", sa.BigInteger()),
            sa.Column("mime_type", sa.Text()),
            sa.Column("format", sa.Text()),
            sa.Column("codec", sa.Text()),
            sa.Column("duration_s", sa.Float()),
            sa.Column("channels", sa.Integer()),
            sa.Column("sample_rate_hz", sa.Integer()),
            sa.Column("bitrate_bps", sa.BigInteger()),
            sa.Column("bit_depth", sa.Integer()),
            sa.Column("title", sa.Text()),
            sa.Column("artist", sa.Text()),
            sa.Column("album", sa.Text()),
            sa.Column("album_artist", sa.Text()),
            sa.Column("genres", sa.JSON(), nullable=False, server_default=sa.text("'[]'")),
            sa.Column("year", sa.Integer()),
            sa.Column("track_number", sa.Integer()),
            sa.Column("disc_number", sa.Integer()),
            sa.Column("composer", sa.Text()),
            sa.Column("label", sa.Text()),
            sa.Column("isrc", sa.Text()),
            sa.Column("comment", sa.Text()),
            sa.Column("artwork_present", sa.Boolean(), nullable=False, server_default=sa.false()),
            sa.Column("artwork_width", sa.Integer()),
            sa.Column("artwork_height", sa.Integer()),
            sa.Column("blob_key", sa.Text()),
            sa.Column("thumbnail_key", sa.Text()),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id", name="pk_tracks"),
            sa.UniqueConstraint("sha256", name="uq_tracks_sha256"),
            sa.CheckConstraint(STATUS_CHECK, name="status"),  # -> ck_tracks_status (naming convention)
        )
    _create_index("ix_tracks_created_at_id", "tracks", ["created_at", "id"])
    _create_index("ix_tracks_status", "tracks", ["status"])
    # Hash on PostgreSQL: equality lookups only, and no 2.7 KB B-tree entry limit for long URLs.
    _create_index("ix_tracks_source_location", "tracks", ["source_location"], postgresql_using="hash")
    _create_index("ix_tracks_blob_key", "tracks", ["blob_key"])
    _create_index("ix_tracks_thumbnail_key", "tracks", ["thumbnail_key"])
    # At most one FAILED row per location, so recording a failure is a race-free upsert.
    location = sa.text("md5(source_location)") if dialect == "postgresql" else "source_location"
    _create_index(
        "uq_tracks_failed_location",
        "tracks",
        [location],
        unique=True,
        sqlite_where=sa.text("status = 'FAILED'"),
        postgresql_where=sa.text("status = 'FAILED'"),
    )

    if not inspector.has_table("track_genres"):
        op.create_table(
            "track_genres",
            sa.Column("track_id", sa.Uuid(), nullable=False),
            sa.Column("genre_norm", sa.Text(), nullable=False),
            sa.Column("genre", sa.Text(), nullable=False),
            sa.ForeignKeyConstraint(
                ["track_id"], ["tracks.id"], name="fk_track_genres_track_id_tracks", ondelete="CASCADE"
            ),
            sa.PrimaryKeyConstraint("track_id", "genre_norm", name="pk_track_genres"),
        )
    _create_index("ix_track_genres_genre_norm_track_id", "track_genres", ["genre_norm", "track_id"])


def downgrade() -> None:
    inspector = _inspector()
    if inspector.has_table("track_genres"):
        op.drop_table("track_genres")
    if inspector.has_table("tracks"):
        op.drop_table("tracks")  # its indexes go with it
