"""Row <-> Track: the only two places that know how a :class:`~loist.model.Track` is laid out in a
``tracks`` row (nested models flattened, field names unchanged), and the genre keys written with it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from loist.catalog.text import genre_rows, search_columns
from loist.model import NAME_LISTS, TAG_FIELDS, ArtworkInfo, AudioInfo, Source, Tags, Track, TrackStatus

AUDIO_FIELDS: tuple[str, ...] = tuple(AudioInfo.model_fields)
LIST_TAG_FIELDS: tuple[str, ...] = ("genres", *NAME_LISTS)  # JSON list columns
_ARTWORK_COLUMNS: dict[str, str] = {
    "present": "artwork_present",
    "width": "artwork_width",
    "height": "artwork_height",
}
_SOURCE_COLUMNS: dict[str, str] = {
    "type": "source_type",
    "location": "source_location",
    "original_filename": "original_filename",
}



def genre_keys(genres: Iterable[str]) -> list[str]:
    """PostgreSQL's ``tracks.genre_keys`` for a track: its ``track_genres.genre_norm`` values, sorted."""
    return sorted(norm for _, norm in genre_rows(list(genres)))


def track_to_row(track: Track) -> dict[str, Any]:
    """The ``tracks`` row for a Track (nested models flattened; names unchanged), search tokens included."""
    row: dict[str, Any] = {
        "id": track.id,
        "status": track.status.value,
        "error_code": track.error_code,
        "error_message": track.error_message,
        "attempts": track.attempts,
        "sha256": track.sha256,
        "size_bytes": track.size_bytes,
        "blob_key": track.blob_key,
        "thumbnail_key": track.thumbnail_key,
        "created_at": utc(track.created_at),
        "updated_at": utc(track.updated_at),
    }
    for field, column in _SOURCE_COLUMNS.items():
        row[column] = getattr(track.source, field)
    for field in AUDIO_FIELDS:
        row[field] = getattr(track.audio, field)
    for field in TAG_FIELDS:
        row[field] = getattr(track.tags, field)
    for field in LIST_TAG_FIELDS:
        row[field] = list(getattr(track.tags, field))
    # the search index's tokens (loist.catalog.text); an untitled track is found by its file name
    row.update(search_columns(track.tags, track.source.original_filename))
    for field, column in _ARTWORK_COLUMNS.items():
        row[column] = getattr(track.artwork, field)
    return row


def row_to_track(row: Mapping[str, Any]) -> Track:
    """The Track for a ``tracks`` row (a ``RowMapping`` or a dict with the same keys)."""
    return Track(
        id=row["id"],
        status=TrackStatus(row["status"]),
        error_code=row["error_code"],
        error_message=row["error_message"],
        attempts=row["attempts"],
        source=Source(**{field: row[column] for field, column in _SOURCE_COLUMNS.items()}),
        sha256=row["sha256"],
        size_bytes=row["size_bytes"],
        audio=AudioInfo(**{field: row[field] for field in AUDIO_FIELDS}),
        tags=Tags(**{field: row[field] or [] if field in LIST_TAG_FIELDS else row[field] for field in TAG_FIELDS}),
        artwork=ArtworkInfo(**{field: row[column] for field, column in _ARTWORK_COLUMNS.items()}),
        blob_key=row["blob_key"],
        thumbnail_key=row["thumbnail_key"],
        created_at=utc(row["created_at"]),
        updated_at=utc(row["updated_at"]),
    )


def utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive value is taken to be UTC already (SQLite reads them back naive)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
