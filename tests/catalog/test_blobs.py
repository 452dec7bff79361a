"""The catalog's side of blob lifetime (``loist.catalog.blobs``) on both dialects: blob locks, the
keys rows reference, and the repairs of rows whose blobs are gone."""

from __future__ import annotations

import asyncio

import pytest

from loist.catalog import Catalog
from loist.catalog.blobs import held
from loist.model import Source, TrackStatus
from tests.catalog.factories import make_track

GUARD_S = 30  # a lock that is never granted fails the test instead of hanging it


async def test_a_held_key_makes_the_next_holder_wait_and_say_so(catalog: Catalog) -> None:
    order: list[str] = []
    blocked = asyncio.Event()
    inside = asyncio.Event()
    leave = asyncio.Event()

    async def first() -> None:
        async with catalog.locked(["audio/aa/a.mp3"]):
            order.append("first in")
            inside.set()
            await leave.wait()
            order.append("first out")

    async def on_blocked() -> None:
        blocked.set()

    async def second() -> None:
        async with catalog.locked(["audio/aa/a.mp3", "thumbnails/aa/a.jpg"], on_blocked=on_blocked):
            order.append("second in")

    async with asyncio.timeout(GUARD_S):
        one = asyncio.create_task(first())
        await inside.wait()
        two = asyncio.create_task(second())
        await blocked.wait()  # the second holder found the key taken and waits
        leave.set()
        await asyncio.gather(one, two)
    assert order == ["first in", "first out", "second in"]


async def test_different_keys_wait_only_on_sqlite(catalog: Catalog) -> None:
    """PostgreSQL locks each key; SQLite's one writer lock covers every key at once."""
    blocked, inside, leave = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def on_blocked() -> None:
        blocked.set()

    async def outer() -> None:
        async with catalog.locked(["audio/aa/a.mp3"]):
            inside.set()
            await leave.wait()

    async def inner() -> str:
        async with catalog.locked(["audio/bb/b.mp3"], on_blocked=on_blocked):
            return "in"

    async with asyncio.timeout(GUARD_S):
        holder = asyncio.create_task(outer())
        await inside.wait()
        other = asyncio.create_task(inner())
        if catalog.dialect == "sqlite":
            await blocked.wait()
            leave.set()
            assert await other == "in"
        else:
            assert await other == "in" and not blocked.is_set()
            leave.set()
        await holder


async def test_catalog_calls_inside_the_lock_commit_or_roll_back_with_it(catalog: Catalog) -> None:
    kept, dropped = make_track(), make_track()
    async with catalog.locked([kept.blob_key or ""]):
        assert held(catalog.engine) is not None
        await catalog.add(kept)
    assert held(catalog.engine) is None
    with pytest.raises(RuntimeError):
        async with catalog.locked([dropped.blob_key or ""]):
            await catalog.add(dropped)
            assert await catalog.get(dropped.id) is not None  # visible inside its transaction
            raise RuntimeError("the claim failed after the insert")
    assert await catalog.get(kept.id) is not None
    assert await catalog.get(dropped.id) is None


async def test_referenced_keys_and_completed_refs(catalog: Catalog) -> None:
    a, _ = await catalog.add(make_track())
    b, _ = await catalog.add(make_track(thumbnail_key=None))
    await catalog.record_failure(Source(type="file", location="/bad.mp3"), "INVALID_FORMAT", "x")
    keys = [a.blob_key or "", a.thumbnail_key or "", b.blob_key or "", "audio/zz/nobody.mp3"]
    assert await catalog.referenced_keys(keys) == set(keys[:3])
    first = await catalog.completed_refs(limit=1)
    second = await catalog.completed_refs(after=first[0].id, limit=1)
    assert await catalog.completed_refs(after=second[0].id, limit=1) == []
    assert {first[0].id, second[0].id} == {a.id, b.id}  # FAILED rows are not listed
    row = first[0] if first[0].id == a.id else second[0]
    assert (row.blob_key, row.thumbnail_key, row.status) == (a.blob_key, a.thumbnail_key, "COMPLETED")


async def test_mark_broken_then_restore(catalog: Catalog) -> None:
    track, _ = await catalog.add(make_track())
    assert await catalog.mark_broken(track.id, "STORAGE_FAILED", "audio blob missing")
    broken = await catalog.get(track.id)
    assert broken is not None and broken.status == TrackStatus.FAILED and broken.error_code == "STORAGE_FAILED"
    assert (broken.sha256, broken.blob_key, broken.tags) == (track.sha256, track.blob_key, track.tags)
    restored = await catalog.restore(track.id, "audio/cc/new.mp3", None)
    assert restored is not None and restored.status == TrackStatus.COMPLETED and restored.error_code is None
    assert (restored.blob_key, restored.thumbnail_key) == ("audio/cc/new.mp3", None)
    assert await catalog.drop_thumbnail(track.id) and await catalog.restore(track.id, "x/y", None) is not None


async def test_mark_broken_shares_a_source_location_as_one_failed_row(catalog: Catalog) -> None:
    """A plain failure record of the location gives way; another broken track keeps it."""
    first, _ = await catalog.add(make_track(source=Source(type="file", location="/music/a.mp3")))
    second, _ = await catalog.add(make_track(source=Source(type="file", location="/music/a.mp3")))
    await catalog.record_failure(Source(type="file", location="/music/a.mp3"), "INVALID_FORMAT", "x")
    assert await catalog.mark_broken(first.id, "STORAGE_FAILED", "audio blob missing")
    assert await catalog.count(TrackStatus.FAILED) == 1  # the failure record went
    assert not await catalog.mark_broken(second.id, "STORAGE_FAILED", "audio blob missing")
    assert (await catalog.get(second.id)).status == TrackStatus.COMPLETED  # type: ignore[union-attr]
