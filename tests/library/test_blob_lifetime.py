"""Blob lifetime cannot race: ingests and deletes of the same bytes, in every order that matters.

Each test forces one interleaving through the library's checkpoints (tests/library/interleave.py),
on every engine with every backend (``any_library``). After each: every COMPLETED row's blobs exist
and hash to its sha256, every id an ingest reported exists, and the store holds no blob that no
row references. Points: ingest ``looked_up`` (the sha256 lookup), ``stored`` (blobs written),
``flushing`` (a claim's blobs about to be flushed), ``claiming`` (rows about to go in),
``committed``; delete ``row_deleted``, ``refs_counted`` (just before a blob delete),
``blobs_deleted``; either ``lock_blocked`` (waiting for a blob lock).
"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from loist.errors import DatabaseFailed, NotFound
from loist.library.service import Library
from loist.model import Track, TrackStatus
from tests.library.blobs import stored_keys
from tests.library.interleave import ANY, install
from tests.support.audio import AudioFactory

WAITING = ("committed", "lock_blocked")  # an ingest got its row in, or is waiting for a lock to


@pytest.fixture
def song(audio_factory: AudioFactory) -> Path:
    """Audio with artwork: every track has two blobs (audio and thumbnail)."""
    return audio_factory("mp3", tags={"title": "Same Bytes", "artist": "Race"}, artwork=True, duration=1.0)


async def completed(lib: Library) -> list[Track]:
    return [track async for track in lib.iter_tracks(status=TrackStatus.COMPLETED)]


def sha256_of_blob(lib: Library, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in lib.iter_blob(key):
        digest.update(chunk)
    return digest.hexdigest()


async def assert_consistent(lib: Library, *reported: uuid.UUID) -> None:
    """Every COMPLETED row has its blobs (right bytes), every reported id exists, no orphan blob."""
    rows = await completed(lib)
    referenced: set[str] = set()
    for track in rows:
        assert track.blob_key and lib.store.exists(track.blob_key), f"{track.id}: audio blob missing"
        assert sha256_of_blob(lib, track.blob_key) == track.sha256
        if track.thumbnail_key:
            assert lib.store.exists(track.thumbnail_key), f"{track.id}: thumbnail missing"
        referenced |= {k for k in (track.blob_key, track.thumbnail_key) if k}
    for track_id in reported:
        assert (await lib.get(track_id)).status == TrackStatus.COMPLETED, f"reported id {track_id} is gone"
    assert stored_keys(lib) == referenced


async def test_ingest_that_saw_the_row_before_a_delete_does_not_report_it(any_library: Library, song: Path) -> None:
    """looked_up (finds X) -> delete X completely -> the ingest goes on."""
    lib = any_library
    x = await lib.ingest_file(song)
    plan = install(lib)
    plan.hold("ingest", "looked_up")
    ingest = plan.start("ingest", lib.ingest_file(song))
    assert await plan.until(ingest, "looked_up") == "looked_up"
    await plan.start("delete", lib.delete(x.id))
    plan.resume("ingest", "looked_up")
    track = await ingest
    assert track.id != x.id
    await plan.finish()
    await assert_consistent(lib, track.id)


async def test_ingest_that_saw_the_row_while_the_delete_is_between_row_and_blobs(any_library: Library, song: Path) -> None:
    """looked_up (finds X) -> delete removes the row and stops -> the ingest goes on -> delete ends."""
    lib = any_library
    x = await lib.ingest_file(song)
    plan = install(lib)
    plan.hold("ingest", "looked_up")
    plan.hold("delete", "row_deleted")
    ingest = plan.start("ingest", lib.ingest_file(song))
    await plan.until(ingest, "looked_up")
    delete = plan.start("delete", lib.delete(x.id))
    assert await plan.until(delete, "row_deleted") == "row_deleted"
    plan.resume("ingest", "looked_up")
    await plan.until(ingest, *WAITING)
    results = await plan.finish()
    assert results["ingest"].id != x.id
    await assert_consistent(lib, results["ingest"].id)


async def test_ingest_commits_between_row_delete_and_refcount(any_library: Library, song: Path) -> None:
    """delete removes the row and stops -> an ingest runs (or waits for its lock) -> delete ends."""
    lib = any_library
    x = await lib.ingest_file(song)
    plan = install(lib)
    plan.hold("delete", "row_deleted")
    delete = plan.start("delete", lib.delete(x.id))
    await plan.until(delete, "row_deleted")
    ingest = plan.start("ingest", lib.ingest_file(song))
    await plan.until(ingest, *WAITING)
    await assert_consistent(lib, (await plan.finish())["ingest"].id)


async def test_ingest_commits_between_refcount_and_blob_delete(any_library: Library, song: Path) -> None:
    """delete counts no reference and stops before deleting the blob -> an ingest commits (or waits)."""
    lib = any_library
    x = await lib.ingest_file(song)
    plan = install(lib)
    plan.hold("delete", "refs_counted")
    delete = plan.start("delete", lib.delete(x.id))
    assert await plan.until(delete, "refs_counted") == "refs_counted"
    ingest = plan.start("ingest", lib.ingest_file(song))
    await plan.until(ingest, *WAITING)
    await assert_consistent(lib, (await plan.finish())["ingest"].id)


async def test_delete_completes_between_an_ingests_blob_write_and_its_commit(any_library: Library, song: Path) -> None:
    """delete removes the row -> an ingest finds the blob there (creates nothing) and stops ->
    delete deletes the blob -> the ingest commits."""
    lib = any_library
    x = await lib.ingest_file(song)
    plan = install(lib)
    plan.hold("delete", "row_deleted")
    plan.hold("ingest", "stored")
    delete = plan.start("delete", lib.delete(x.id))
    await plan.until(delete, "row_deleted")
    ingest = plan.start("ingest", lib.ingest_file(song))
    assert await plan.until(ingest, "stored", "lock_blocked") == "stored"
    plan.resume("delete", "row_deleted")
    await delete
    await assert_consistent(lib, (await plan.finish())["ingest"].id)


async def test_two_ingests_and_a_delete(any_library: Library, song: Path) -> None:
    """A and B write (A creates, B finds it) -> A commits X -> X is deleted -> B commits."""
    lib = any_library
    plan = install(lib)
    plan.hold("A", "stored")
    plan.hold("B", "stored")
    first = plan.start("A", lib.ingest_file(song))
    await plan.until(first, "stored")
    second = plan.start("B", lib.ingest_file(song))
    await plan.until(second, "stored")
    plan.resume("A", "stored")
    x = await first
    await plan.start("delete", lib.delete(x.id))
    results = await plan.finish()
    assert results["B"].id != x.id
    await assert_consistent(lib, results["B"].id)


async def test_failed_ingest_discards_a_blob_another_ingest_found(any_library: Library, song: Path) -> None:
    """A creates the blobs, B finds them -> A's commit fails and A deletes what it created -> B commits."""
    lib = any_library
    plan = install(lib)
    plan.hold("A", "stored")
    plan.hold("B", "stored")
    plan.fail("A", "claiming", DatabaseFailed("injected: the insert failed"))
    first = plan.start("A", lib.ingest_file(song))
    await plan.until(first, "stored")
    second = plan.start("B", lib.ingest_file(song))
    await plan.until(second, "stored")
    plan.resume("A", "stored")
    with pytest.raises(DatabaseFailed):
        await first
    plan.tasks.remove(first)
    await assert_consistent(lib, (await plan.finish())["B"].id)


async def test_delete_holding_its_blob_delete_open_while_an_ingest_arrives(any_library: Library, song: Path) -> None:
    """delete deleted the blobs and stops before it ends -> an ingest runs (or waits) -> delete ends."""
    lib = any_library
    x = await lib.ingest_file(song)
    plan = install(lib)
    plan.hold("delete", "blobs_deleted")
    delete = plan.start("delete", lib.delete(x.id))
    assert await plan.until(delete, "blobs_deleted") == "blobs_deleted"
    ingest = plan.start("ingest", lib.ingest_file(song))
    await plan.until(ingest, *WAITING)
    results = await plan.finish()
    assert results["ingest"].id != x.id
    await assert_consistent(lib, results["ingest"].id)


async def test_ingest_of_the_same_bytes_repairs_a_row_whose_blobs_vanished(any_library: Library, song: Path) -> None:
    lib = any_library
    x = await lib.ingest_file(song)
    assert x.blob_key and x.thumbnail_key
    for key in (x.blob_key, x.thumbnail_key):
        lib.store.delete(key)
    again = await lib.ingest_file(song)
    assert again.id == x.id
    await assert_consistent(lib, x.id)


async def test_deleting_a_track_twice_at_once_deletes_it_once(any_library: Library, song: Path) -> None:
    lib = any_library
    x = await lib.ingest_file(song)
    plan = install(lib)
    plan.hold("D1", "row_deleted")
    first = plan.start("D1", lib.delete(x.id))
    await plan.until(first, "row_deleted")
    second = plan.start("D2", lib.delete(x.id))
    with pytest.raises(NotFound):
        await second
    plan.tasks.remove(second)
    await plan.finish()
    assert await completed(lib) == []
    assert stored_keys(lib) == set()


async def test_bulk_ingest_repairs_a_row_whose_blobs_vanished(any_library: Library, song: Path) -> None:
    lib = any_library
    x = await lib.ingest_file(song)
    assert x.blob_key and x.thumbnail_key
    for key in (x.blob_key, x.thumbnail_key):
        lib.store.delete(key)
    [outcome] = [outcome async for outcome in lib.ingest_many([str(song)])]
    assert outcome.track is not None and outcome.track.id == x.id and not outcome.created
    await assert_consistent(lib, x.id)


async def test_bulk_commit_writes_again_blobs_deleted_before_it(any_library: Library, song: Path) -> None:
    """A batch's blobs vanish between the worker's write and the batch's commit: the commit, with the
    locks held, finds them gone and writes them again from the file and the thumbnail it kept."""
    lib = any_library
    plan = install(lib)
    plan.hold(ANY, "claiming")

    async def bulk() -> list[Track]:
        return [outcome.track async for outcome in lib.ingest_many([str(song)]) if outcome.track]

    task = plan.start("bulk", bulk())
    assert await plan.until(task, "claiming", name=ANY) == "claiming"
    written = stored_keys(lib)
    assert len(written) == 2  # audio and thumbnail, not yet claimed
    for key in written:
        lib.store.delete(key)
    [track] = (await plan.finish())["bulk"]
    assert {track.blob_key, track.thumbnail_key} == written
    await assert_consistent(lib, track.id)
