"""The catalog's behaviour, run against SQLite and PostgreSQL through the ``catalog`` fixture."""

from __future__ import annotations

import asyncio
import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from loist.catalog import Catalog
from loist.catalog.schema import track_genres, tracks
from loist.errors import InvalidArgument
from loist.model import Source, Tags, TrackStatus
from tests.catalog.factories import BASE_TIME, make_track, sha_of


async def genre_rows_of(catalog: Catalog, track_id: uuid.UUID) -> set[tuple[str, str]]:
    async with catalog.engine.connect() as conn:
        result = await conn.execute(
            sa.select(track_genres.c.genre, track_genres.c.genre_norm).where(
                track_genres.c.track_id == track_id
            )
        )
        return {(row.genre, row.genre_norm) for row in result}


async def all_genre_rows(catalog: Catalog) -> int:
    async with catalog.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(track_genres))).scalar_one()


# --- add / dedupe ------------------------------------------------------------------------------


async def test_add_then_get_round_trips_every_field(catalog: Catalog) -> None:
    track = make_track()
    stored, created = await catalog.add(track)
    assert created is True
    assert stored == track
    assert await catalog.get(track.id) == track
    assert await catalog.get_by_sha256(track.sha256 or "") == track
    assert await catalog.count() == 1


async def test_add_same_sha256_returns_existing_and_inserts_nothing(catalog: Catalog) -> None:
    first, _ = await catalog.add(make_track(1, sha256=sha_of("same")))
    again, created = await catalog.add(make_track(2, sha256=sha_of("same")))
    assert created is False
    assert again == first
    assert await catalog.count() == 1


async def test_concurrent_adds_of_one_sha256_make_exactly_one_row(catalog: Catalog) -> None:
    candidates = [make_track(n, sha256=sha_of("race")) for n in range(8)]
    results = await asyncio.gather(*(catalog.add(track) for track in candidates))
    assert sum(created for _, created in results) == 1
    assert len({stored.id for stored, _ in results}) == 1
    assert await catalog.count() == 1
    winner = results[0][0]
    assert len(await genre_rows_of(catalog, winner.id)) == 2


async def test_get_unknown_returns_none(catalog: Catalog) -> None:
    assert await catalog.get(uuid.uuid4()) is None
    assert await catalog.get_by_sha256(sha_of("nothing")) is None


async def test_add_many_dedupes_against_catalog_and_within_batch(catalog: Catalog) -> None:
    existing, _ = await catalog.add(make_track(1, sha256=sha_of("old")))
    batch = [
        make_track(2, sha256=sha_of("new-a")),
        make_track(3, sha256=sha_of("old")),  # already catalogued
        make_track(4, sha256=sha_of("new-b")),
        make_track(5, sha256=sha_of("new-a")),  # duplicate of the first in this batch
        make_track(6, sha256=None),  # no content hash: always inserted
    ]
    results = await catalog.add_many(batch)
    assert [created for _, created in results] == [True, False, True, False, True]
    assert results[0][0] == batch[0]
    assert results[1][0] == existing
    assert results[3][0] == batch[0]
    assert results[4][0] == batch[4]
    assert await catalog.count() == 4
    assert await all_genre_rows(catalog) == 4 * 2  # genres written for created rows only
    assert await catalog.add_many([]) == []


async def test_add_many_thousand_rows_all_readable(catalog: Catalog) -> None:
    batch = [make_track(n) for n in range(1000)]
    results = await catalog.add_many(batch)
    assert all(created for _, created in results)
    assert await catalog.count() == 1000
    assert await catalog.get(batch[500].id) == batch[500]
    assert await all_genre_rows(catalog) == 2000


# --- failures ----------------------------------------------------------------------------------


async def test_record_failure_upserts_by_location_and_counts_attempts(catalog: Catalog) -> None:
    source = Source(type="http_url", location="https://example.com/broken.mp3")
    first = await catalog.record_failure(source, "FETCH_FAILED", "502 from origin")
    assert (first.status, first.attempts, first.error_code) == (TrackStatus.FAILED, 1, "FETCH_FAILED")
    second = await catalog.record_failure(source, "TIMEOUT", "took too long")
    assert second.id == first.id
    assert (second.attempts, second.error_code, second.error_message) == (2, "TIMEOUT", "took too long")
    assert second.updated_at >= first.updated_at
    assert second.created_at == first.created_at
    other = await catalog.record_failure(Source(type="file", location="/music/x.mp3"), "INVALID_FORMAT", "no")
    assert other.id != first.id
    assert await catalog.count(TrackStatus.FAILED) == 2
    assert await catalog.get(first.id) == second


async def test_record_failure_without_location_adds_a_row_each_time(catalog: Catalog) -> None:
    source = Source(type="synthetic")
    a = await catalog.record_failure(source, "INVALID_FORMAT", "x")
    b = await catalog.record_failure(source, "INVALID_FORMAT", "x")
    assert a.id != b.id
    assert await catalog.count(TrackStatus.FAILED) == 2


async def test_record_failure_with_a_very_long_location(catalog: Catalog) -> None:
    source = Source(type="http_url", location="https://example.com/a?sig=" + "x9" * 4000)  # 8 KB
    await catalog.record_failure(source, "FETCH_FAILED", "x")
    again = await catalog.record_failure(source, "FETCH_FAILED", "x")
    assert again.attempts == 2


async def test_clear_failures_deletes_only_failed_rows_for_that_location(catalog: Catalog) -> None:
    location = "https://example.com/flaky.mp3"
    await catalog.record_failure(Source(type="http_url", location=location), "TIMEOUT", "x")
    await catalog.record_failure(
        Source(type="http_url", location="https://example.com/other"), "TIMEOUT", "x"
    )
    ok, _ = await catalog.add(make_track(source=Source(type="http_url", location=location)))
    assert await catalog.clear_failures(location) == 1
    assert await catalog.clear_failures(location) == 0
    assert await catalog.get(ok.id) == ok
    assert await catalog.count(TrackStatus.FAILED) == 1
    assert await catalog.count(TrackStatus.COMPLETED) == 1


# --- listing -----------------------------------------------------------------------------------


async def _page_through(catalog: Catalog, limit: int, **kwargs: object) -> list[uuid.UUID]:
    seen: list[uuid.UUID] = []
    cursor = None
    while True:
        page = await catalog.list_tracks(cursor=cursor, limit=limit, **kwargs)  # type: ignore[arg-type]
        seen.extend(track.id for track in page.items)
        if page.next_cursor is None:
            return seen
        assert len(page.items) == limit
        cursor = page.next_cursor


async def test_list_pages_newest_first_without_duplicates_or_gaps(catalog: Catalog) -> None:
    # Ties on created_at (groups of three share a timestamp) exercise the id tie-breaker.
    batch = [make_track(n, created_at=BASE_TIME + timedelta(seconds=n // 3)) for n in range(25)]
    await catalog.add_many(batch)
    seen = await _page_through(catalog, limit=7)
    assert len(seen) == len(set(seen)) == 25
    expected = sorted(batch, key=lambda t: (t.created_at, t.id), reverse=True)
    assert seen == [t.id for t in expected]


async def test_list_is_stable_under_concurrent_inserts(catalog: Catalog) -> None:
    older = [make_track(n) for n in range(10)]
    await catalog.add_many(older)
    first = await catalog.list_tracks(limit=4)
    await catalog.add_many([make_track(100 + n) for n in range(5)])  # newer rows arrive mid-listing
    rest: list[uuid.UUID] = []
    cursor = first.next_cursor
    while cursor:
        page = await catalog.list_tracks(cursor=cursor, limit=4)
        rest.extend(track.id for track in page.items)
        cursor = page.next_cursor
    listed = [track.id for track in first.items] + rest
    assert listed == [t.id for t in sorted(older, key=lambda t: t.created_at, reverse=True)]


async def test_list_filters_by_status_and_empty_catalog_has_one_empty_page(catalog: Catalog) -> None:
    empty = await catalog.list_tracks()
    assert (empty.items, empty.next_cursor) == ([], None)
    done, _ = await catalog.add(make_track())
    await catalog.record_failure(Source(type="file", location="/x.mp3"), "INVALID_FORMAT", "x")
    page = await catalog.list_tracks(status=TrackStatus.COMPLETED)
    assert [t.id for t in page.items] == [done.id]
    failed = await catalog.list_tracks(status=TrackStatus.FAILED)
    assert [t.status for t in failed.items] == [TrackStatus.FAILED]


@pytest.mark.parametrize(
    "cursor",
    [
        "not base64 at all!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"c": "2026-01-01T00:00:00+00:00"}').decode(),
        base64.urlsafe_b64encode(b'{"c": "yesterday", "i": "x"}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
    ],
)
async def test_invalid_cursor_is_invalid_argument(catalog: Catalog, cursor: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        await catalog.list_tracks(cursor=cursor)
    assert "cursor" in info.value.message


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_list_limit_out_of_range_is_invalid_argument(catalog: Catalog, limit: int) -> None:
    with pytest.raises(InvalidArgument):
        await catalog.list_tracks(limit=limit)


# --- update / delete ---------------------------------------------------------------------------


async def test_update_tags_replaces_tags_and_genre_rows(catalog: Catalog) -> None:
    track, _ = await catalog.add(make_track())
    assert await genre_rows_of(catalog, track.id) == {("Rock", "rock"), ("Électro Pop", "electro pop")}
    tags = Tags(title="New Title", artist="Someone", genres=["Jazz", "jazz", " Bossa  Nova ", ""])
    updated = await catalog.update_tags(track.id, tags)
    assert updated is not None
    assert updated.tags == tags
    assert updated.created_at == track.created_at
    assert updated.updated_at > track.updated_at
    assert updated.audio == track.audio and updated.blob_key == track.blob_key
    assert await catalog.get(track.id) == updated
    assert await genre_rows_of(catalog, track.id) == {("Jazz", "jazz"), ("Bossa Nova", "bossa nova")}


async def test_update_tags_of_unknown_track_returns_none(catalog: Catalog) -> None:
    assert await catalog.update_tags(uuid.uuid4(), Tags(title="x")) is None


async def test_delete_returns_row_and_removes_it_with_its_genres(catalog: Catalog) -> None:
    keep, _ = await catalog.add(make_track())
    gone, _ = await catalog.add(make_track())
    deleted = await catalog.delete(gone.id)
    assert deleted == gone
    assert await catalog.get(gone.id) is None
    assert await genre_rows_of(catalog, gone.id) == set()
    assert await catalog.delete(gone.id) is None
    assert await catalog.get(keep.id) == keep
    assert await all_genre_rows(catalog) == 2


async def test_genre_rows_cascade_when_a_track_row_is_deleted_directly(catalog: Catalog) -> None:
    track, _ = await catalog.add(make_track())
    async with catalog.engine.begin() as conn:
        await conn.execute(sa.delete(tracks).where(tracks.c.id == track.id))
    assert await genre_rows_of(catalog, track.id) == set()  # foreign keys are on (SQLite PRAGMA)


async def test_count_blob_refs_counts_audio_and_thumbnail_references(catalog: Catalog) -> None:
    a, _ = await catalog.add(make_track())
    await catalog.add(make_track(thumbnail_key=a.thumbnail_key))
    assert await catalog.count_blob_refs(a.blob_key or "") == 1
    assert await catalog.count_blob_refs(a.thumbnail_key or "") == 2
    assert await catalog.count_blob_refs("audio/zz/none.mp3") == 0


async def test_count_and_wipe(catalog: Catalog) -> None:
    await catalog.add_many([make_track() for _ in range(3)])
    await catalog.record_failure(Source(type="file", location="/y.mp3"), "INVALID_FORMAT", "x")
    assert (await catalog.count(), await catalog.count(TrackStatus.COMPLETED)) == (4, 3)
    await catalog.wipe()
    assert await catalog.count() == 0
    assert await all_genre_rows(catalog) == 0


# --- timestamps --------------------------------------------------------------------------------


async def test_timestamps_come_back_aware_utc(catalog: Catalog) -> None:
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 14, 30, 0, 5, tzinfo=plus_two)
    naive = datetime(2026, 3, 1, 9, 0, 0)
    a, _ = await catalog.add(make_track(created_at=local, updated_at=local))
    b, _ = await catalog.add(make_track(created_at=naive, updated_at=naive))
    for stored, want in ((a, local), (b, naive.replace(tzinfo=UTC))):
        for got in (stored, await catalog.get(stored.id)):
            assert got is not None
            assert got.created_at.tzinfo is UTC
            assert got.created_at == want
            assert got.updated_at.utcoffset() == timedelta(0)
    failed = await catalog.record_failure(Source(type="file", location="/z.mp3"), "INVALID_FORMAT", "x")
    assert failed.created_at.tzinfo is UTC
    assert abs(failed.created_at - datetime.now(UTC)) < timedelta(minutes=5)


async def test_dialect_property(catalog: Catalog, catalog_url: str) -> None:
    assert catalog.dialect == ("sqlite" if catalog_url.startswith("sqlite") else "postgresql")
    await catalog.ping()


async def test_clear_failures_many_deletes_failed_rows_of_every_location(catalog: Catalog) -> None:
    locations = [f"/music/{n}.mp3" for n in range(3)]
    for location in locations:
        await catalog.record_failure(Source(type="file", location=location), "INVALID_FORMAT", "x")
    kept = await catalog.record_failure(
        Source(type="file", location="/music/keep.mp3"), "INVALID_FORMAT", "x"
    )
    ok, _ = await catalog.add(make_track(source=Source(type="file", location=locations[0])))
    assert await catalog.clear_failures_many([*locations, locations[0]]) == 3
    assert await catalog.clear_failures_many([]) == 0
    assert await catalog.get(kept.id) == kept
    assert await catalog.get(ok.id) == ok


async def test_check_schema_accepts_a_database_at_head(catalog: Catalog) -> None:
    await catalog.check_schema()
