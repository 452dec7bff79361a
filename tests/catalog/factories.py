"""Track factories for catalog tests (every field populated, so a dropped column cannot hide)."""

from __future__ import annotations

import hashlib
import itertools
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loist.catalog.engine import build_engine
from loist.catalog.rows import track_to_row
from loist.catalog.schema import tracks
from loist.model import NAME_LISTS, ArtworkInfo, AudioInfo, Source, Tags, Track, TrackStatus, new_track_id

_counter = itertools.count(1)
BASE_TIME = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


def sha_of(n: int | str) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def make_track(n: int | None = None, **overrides: Any) -> Track:
    """A COMPLETED track numbered ``n`` (unique sha256 per number), fields overridable."""
    n = next(_counter) if n is None else n
    created = overrides.pop("created_at", BASE_TIME + timedelta(seconds=n))
    sha = overrides.pop("sha256", sha_of(f"track-{n}-{uuid.uuid4()}"))
    key = sha or sha_of(uuid.uuid4())
    fields: dict[str, Any] = {
        "id": new_track_id(),
        "status": TrackStatus.COMPLETED,
        "source": Source(
            type="http_url", location=f"https://example.com/{n}.mp3", original_filename=f"{n}.mp3"
        ),
        "sha256": sha,
        "size_bytes": 5_000_000_000 + n,  # > 2**32: needs BIGINT
        "audio": AudioInfo(
            mime_type="audio/mpeg",
            format="mp3",
            codec="mp3",
            duration_s=181.25,
            channels=2,
            sample_rate_hz=44100,
            bitrate_bps=320000,
            bit_depth=16,
        ),
        "tags": Tags(
            title=f"Song {n}",
            artist="Artïst",
            album="Album",
            album_artist="Various",
            genres=["Rock", "Électro Pop"],
            year=1999,
            track_number=3,
            disc_number=1,
            composer="Composer",
            label="Label",
            isrc="USRC17607839",
            comment="a comment; with 'quotes' and \"more\"",
        ),
        "artwork": ArtworkInfo(present=True, width=600, height=600),
        "blob_key": f"audio/{key[:2]}/{key}.mp3",
        "thumbnail_key": f"thumbnails/{key[:2]}/{key}.jpg",
        "created_at": created,
        "updated_at": created,
    }
    fields.update(overrides)
    return Track(**fields)


def old_row(track: Track) -> dict[str, Any]:
    """The ``tracks`` row of ``track`` as a catalog before migration 0007 wrote it (no name lists),
    for tests that fill a database at an earlier revision."""
    return {key: value for key, value in track_to_row(track).items() if key not in NAME_LISTS}


async def insert_old_rows(url: str, batch: list[Track]) -> None:
    """Insert ``batch`` (no genres) into a catalog at a revision before 0007."""
    engine = build_engine(url, null_pool=True)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(tracks), [old_row(track) for track in batch])
    finally:
        await engine.dispose()
