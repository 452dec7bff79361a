"""The catalog schema: SQLAlchemy Core tables on one MetaData (Core, not ORM: bulk ingest is hot).

Column names mirror :class:`loist.model.Track` exactly (nested models flattened: ``source.type`` ->
``source_type``, ``audio.duration_s`` -> ``duration_s``, ``artwork.present`` -> ``artwork_present``),
so a field is never renamed on its way to the database. The Alembic history in ``migrations/`` is
the authority on what exists in a database; these objects describe the same thing for queries, and
``tests/catalog/test_migrations.py`` checks that the two agree.

``track_genres`` is a child table kept in sync by the catalog in the same transaction as every write
to ``tracks``; search uses it for genre filters and facets (``genre_norm`` is casefolded and
accent-folded, see :func:`loist.catalog.text.normalize_genre`).

PostgreSQL only: ``tracks.genre_keys`` (migration 0004), a ``text[]`` of the same ``genre_norm`` values
with a GIN index, written by the catalog in the same statement as the row. It is not part of the
Core ``tracks`` table (SQLite has no such column); :data:`pg_tracks` is ``tracks`` plus that column,
for the catalog's writes on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from loist.catalog.text import SEARCH_COLUMNS
from loist.model import NAME_LISTS, TrackStatus

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

STATUS_VALUES: tuple[str, ...] = tuple(status.value for status in TrackStatus)

# Partial unique index: at most one FAILED row per source location, so record_failure can upsert.
# PostgreSQL indexes md5(source_location): a B-tree entry is limited to ~2.7 KB and signed URLs can
# be longer. SQLite has no such limit and indexes the column itself.
FAILED_LOCATION_INDEX = "uq_tracks_failed_location"


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    PostgreSQL ``timestamptz`` returns aware values already; SQLite stores text and returns naive
    ones, which this type reads as UTC. Naive values written are taken to be UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw text from an aggregate on SQLite
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


tracks = sa.Table(
    "tracks",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error_code", sa.String(32)),
    sa.Column("error_message", sa.Text()),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("1")),
    sa.Column("source_type", sa.String(16), nullable=False),
    sa.Column("source_location", sa.Text()),
    sa.Column("original_filename", sa.Text()),
    sa.Column("sha256", sa.String(64)),
    sa.Column("size_bytes", sa.BigInteger()),
    # audio
    sa.Column("mime_type", sa.Text()),
    sa.Column("format", sa.Text()),
    sa.Column("codec", sa.Text()),
    sa.Column("duration_s", sa.Float()),
    sa.Column("channels", sa.Integer()),
    sa.Column("sample_rate_hz", sa.Integer()),
    sa.Column("bitrate_bps", sa.BigInteger()),
    sa.Column("bit_depth", sa.Integer()),
    # tags
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
    # Every name of the multi-valued tags (migration 0007); artist, album_artist and composer above
    # hold their display form (the names joined with " & ", see loist.model.Tags).
    *(sa.Column(name, sa.JSON(), nullable=False, server_default=sa.text("'[]'")) for name in NAME_LISTS),
    # Search tokens of the tags (added by migration 0002_search, derived by loist.catalog.text,
    # written by the catalog with every insert and tag update). Not part of Track.
    *(sa.Column(name, sa.Text(), nullable=False, server_default="") for name in SEARCH_COLUMNS.values()),
    # artwork
    sa.Column("artwork_present", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("artwork_width", sa.Integer()),
    sa.Column("artwork_height", sa.Integer()),
    # blobs
    sa.Column("blob_key", sa.Text()),
    sa.Column("thumbnail_key", sa.Text()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("sha256", name="uq_tracks_sha256"),
    sa.CheckConstraint(
        "status IN (" + ", ".join(f"'{value}'" for value in STATUS_VALUES) + ")", name="status"
    ),
)

sa.Index("ix_tracks_created_at_id", tracks.c.created_at, tracks.c.id)
sa.Index("ix_tracks_status", tracks.c.status)
# A hash index on PostgreSQL (migration 0001). Not said here: a ``postgresql_using`` keyword makes
# SQLAlchemy import its PostgreSQL dialect to check it, ~20 ms of every command on a SQLite library.
sa.Index("ix_tracks_source_location", tracks.c.source_location)
sa.Index("ix_tracks_blob_key", tracks.c.blob_key)
sa.Index("ix_tracks_thumbnail_key", tracks.c.thumbnail_key)
# FAILED_LOCATION_INDEX is dialect-specific (see above) and created by the migration only.

track_genres = sa.Table(
    "track_genres",
    metadata,
    sa.Column(
        "track_id",
        sa.Uuid(),
        sa.ForeignKey("tracks.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("genre_norm", sa.Text(), primary_key=True),
    sa.Column("genre", sa.Text(), nullable=False),
)

sa.Index("ix_track_genres_genre_norm_track_id", track_genres.c.genre_norm, track_genres.c.track_id)

# PostgreSQL only (migration 0004): each track's normalised genres (``track_genres.genre_norm``, sorted)
# in one ``text[]`` with a GIN index, so a genre filter is one more bitmap the planner can AND with the
# year, format and full-text indexes before it visits any row. SQLite filters through ``track_genres``.
GENRE_KEYS = "genre_keys"
GENRE_KEYS_INDEX = f"ix_tracks_{GENRE_KEYS}"
# ``tracks`` as PostgreSQL has it, genre_keys included: the catalog writes rows through this copy (on
# its own MetaData, so the schema comparison and SQLite never see the column). Queries that read the
# column refer to it as ``tracks.genre_keys`` text (loist.catalog.search.builder, .facets).
pg_tracks = tracks.to_metadata(sa.MetaData(naming_convention=NAMING_CONVENTION))
pg_tracks.append_column(
    # sa.ARRAY, which the PostgreSQL dialect makes its own ARRAY: importing that dialect costs every
    # command on a SQLite library ~20 ms (docs/architecture.md, "Start-up cost").
    sa.Column(GENRE_KEYS, sa.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'"))
)

# Every column of ``tracks`` (what an insert writes), and those that mirror Track (what reads select).
ROW_COLUMNS: tuple[str, ...] = tuple(column.name for column in tracks.columns)
TRACK_COLUMNS: tuple[str, ...] = tuple(name for name in ROW_COLUMNS if name not in SEARCH_COLUMNS.values())
track_columns: tuple[sa.Column[Any], ...] = tuple(tracks.c[name] for name in TRACK_COLUMNS)

# Durable background jobs (migration 0008; the queue is :mod:`loist.catalog.jobs`): one row per
# (track, kind) of derived work. ``result_key`` is the derived blob a finished job made: a blob
# reference like ``tracks.blob_key`` (kept while referenced, see ``catalog.blobs.referenced_keys``).
JOB_STATES: tuple[str, ...] = ("queued", "running", "done", "dead")
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("track_id", sa.Uuid(), sa.ForeignKey("tracks.id", ondelete="CASCADE"), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("run_at", UTCDateTime(), nullable=False),  # queued: not before; running: claimed at
    sa.Column("lease_until", UTCDateTime()),  # running: another worker may take it over after this
    sa.Column("lease_token", sa.String(32)),  # the claim's fence: only its holder may finish it
    sa.Column("last_error", sa.Text()),
    sa.Column("result_key", sa.Text()),
    sa.Column("result", sa.JSON()),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("track_id", "kind", name="uq_jobs_track_id_kind"),
    sa.CheckConstraint("state IN (" + ", ".join(f"'{state}'" for state in JOB_STATES) + ")", name="state"),
)

sa.Index("ix_jobs_state_run_at", jobs.c.state, jobs.c.run_at)
sa.Index("ix_jobs_result_key", jobs.c.result_key)
