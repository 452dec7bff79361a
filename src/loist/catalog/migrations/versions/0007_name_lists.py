"""Every name of the multi-valued tags: ``tracks.artists``, ``album_artists`` and ``composers``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04

Until now a track kept one artist (the first of ID3v2.4 ``TPE1=["A", "B"]``, of repeated Vorbis
``ARTIST`` fields, of an MP4 ``©ART`` list), so searching for B found nothing. Each of these tags
now has a JSON list column beside its display string (``artist`` becomes the names joined with
" & ", see :class:`loist.model.Tags`). Existing rows get the one name they kept (the other names
come back when the file is ingested again); their ``search_artist``, ``search_album`` and
``search_composer`` tokens do not change (one name indexes as the string did).

A track without a title is listed by its file name; it is now also found by the file name's words:
``search_title`` of such rows is rewritten from the file name here (the search index triggers follow).

Safe to re-run: columns are added only when missing and rows rewritten only when they differ. The
downgrade drops the columns and clears the file-name words again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from loist.catalog.text import file_title, index_text

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME_COLUMNS = {"artists": "artist", "album_artists": "album_artist", "composers": "composer"}
CHUNK = 1000

_tracks = sa.table(
    "tracks",
    sa.column("id", sa.Uuid()),
    sa.column("title", sa.Text()),
    sa.column("original_filename", sa.Text()),
    sa.column("search_title", sa.Text()),
)


def _columns(bind: sa.Connection) -> set[str]:
    return {column["name"] for column in sa.inspect(bind).get_columns("tracks")}


def upgrade() -> None:
    bind = op.get_bind()
    existing = _columns(bind)
    sqlite = bind.dialect.name == "sqlite"
    as_list = "json_array({})" if sqlite else "json_build_array({})"
    as_text = "" if sqlite else "::text"  # PostgreSQL's json has no equality
    for many, one in NAME_COLUMNS.items():
        if many not in existing:
            op.add_column(
                "tracks", sa.Column(many, sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
            )
        # The one name each row kept (only rows still without their list: a re-run changes nothing).
        bind.exec_driver_sql(
            f"UPDATE tracks SET {many} = {as_list.format(one)} "  # noqa: S608  # nosec B608 (module constants)
            f"WHERE {one} IS NOT NULL AND {one} <> '' AND {many}{as_text} = '[]'"
        )
    _title_words(bind, from_filename=True)


def downgrade() -> None:
    bind = op.get_bind()
    _title_words(bind, from_filename=False)
    existing = _columns(bind)
    for many in NAME_COLUMNS:
        if many in existing:
            op.drop_column("tracks", many)


def _title_words(bind: sa.Connection, *, from_filename: bool) -> None:
    """Set (or clear) ``search_title`` of the untitled rows to their file name's words."""
    untitled = sa.select(_tracks.c.id, _tracks.c.original_filename, _tracks.c.search_title).where(
        sa.or_(_tracks.c.title.is_(None), _tracks.c.title == ""), _tracks.c.original_filename.is_not(None)
    )
    rows = bind.execute(untitled).all()
    params = []
    for track_id, filename, stored in rows:
        wanted = index_text(file_title(filename)) if from_filename else ""
        if wanted != stored:
            params.append({"b_id": track_id, "words": wanted})
    statement = (
        _tracks.update()
        .where(_tracks.c.id == sa.bindparam("b_id", type_=sa.Uuid()))
        .values(search_title=sa.bindparam("words"))
    )
    for start in range(0, len(params), CHUNK):
        bind.execute(statement, params[start : start + CHUNK])
