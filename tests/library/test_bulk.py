"""Bulk ingest when something gives way part-way, on both engine shapes: a stopped run, workers
ended mid-chunk, a database failure between batches, a download cut short.

The rule every test checks: what was committed is reported and keeps its blobs; every other input
gets an outcome too, and nothing that was not committed keeps a blob (the store's own listing
equals the keys the catalogue's rows reference). Runs use small batches and chunks
(``BulkControl``) so a few dozen files make several batches, and ``after_batch`` to act at a known
point between two batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import threading
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from loist.errors import ErrorCode
from loist.library.bulk import Stored, analyse_and_store
from loist.library.lifetime import Checkpoints
from loist.library.pipeline import BulkControl, IngestOutcome
from loist.library.service import Library
from loist.model import TrackStatus
from loist.storage.base import audio_key
from tests.library.blobs import referenced_keys, stored_keys
from tests.support.audio import AudioFactory, distinct_mp3s, make_bad_file
from tests.support.pg import REJECTED, refusing_failure_cleanup, rejecting_title
from tests.support.polling import apoll_until


async def ingest(library: Library, sources: list[str], control: BulkControl) -> list[IngestOutcome]:
    return [o async for o in library.ingest_many(sources, concurrency=2, control=control)]


async def assert_no_blob_without_a_row(library: Library) -> None:
    assert stored_keys(library) == await referenced_keys(library)


async def test_a_stopped_run_keeps_what_it_committed_and_removes_everything_else(
    library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    """Stop right after the first batch commits, once the workers have written blobs for files
    that are not committed (the run keeps analysing while it is held): those blobs go."""
    paths = distinct_mp3s(tmp_path / "many", 48, audio_factory("mp3").read_bytes())
    control = BulkControl(batch_size=8, chunk_size=4)

    async def after_batch(n: int) -> None:
        committed = len(await referenced_keys(library))
        await apoll_until(lambda: len(stored_keys(library)) > committed, timeout_s=30,
                          what="blobs written for files not yet committed")
        control.stop.set()

    control.after_batch = after_batch
    outcomes = await ingest(library, [str(tmp_path / "many")], control)

    assert sorted(o.input for o in outcomes) == [str(p) for p in paths]  # one outcome per file
    done = [o for o in outcomes if o.ok]
    assert 8 <= len(done) < 48 and all(o.created for o in done)  # the first batch, nothing after it
    assert all(o.interrupted and o.error.code == ErrorCode.INTERRUPTED for o in outcomes if not o.ok)
    assert await library.catalog.count() == len(done)  # an interrupted file leaves no FAILED row either
    await assert_no_blob_without_a_row(library)

    again = await ingest(library, [str(tmp_path / "many")], BulkControl(batch_size=8, chunk_size=4))
    assert sum(o.created for o in again) == 48 - len(done) and all(o.ok for o in again)
    await assert_no_blob_without_a_row(library)


class FreezeWorkersAtTheFirstFlush(Checkpoints):
    """Stops (SIGSTOP) every analysis worker when the run's first batch is about to be flushed and
    committed: the chunks they hold then cannot answer, however fast the files are or however slow
    the commit. Without this the test raced the workers: under load the first batch's flush (a
    ``syncfs``) took long enough for them to finish all 128 files, and no chunk was left to end."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self.frozen: list[int] = []

    async def reached(self, point: str) -> None:
        pool = self.library.pipeline._pool
        if point == "flushing" and not self.frozen and pool is not None:
            for process in list(pool._processes.values()):  # type: ignore[attr-defined]
                os.kill(process.pid, signal.SIGSTOP)
                self.frozen.append(process.pid)

    def thaw(self) -> None:
        """Let any still-frozen worker go on (it was killed when the test passes): a failed test
        must not leave stopped processes that the library's close would wait for."""
        for pid in self.frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("any_library", ["sqlite-local", "postgresql-local"], indirect=True)
async def test_workers_ended_mid_chunk_leave_no_blob(
    any_library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    """With no grace period, the stop kills the analysis workers at once, in the middle of their
    chunks (the first batch is one chunk; the workers are held where they are when it is flushed,
    so their chunks are still out when the run stops): what they wrote is found in their chunks'
    journals and deleted. The next run gets a new pool.

    Both engines, local blobs only: a worker stopped in the middle of an upload would stall the
    GCS emulator, which serves one request at a time (real GCS does not). The journal release on
    GCS is the same code, run by the two tests around this one on ``postgresql-gcs``.
    """
    library = any_library
    distinct_mp3s(tmp_path / "many", 128, audio_factory("mp3").read_bytes())
    control = BulkControl(batch_size=4, chunk_size=4, grace_s=0)
    freeze = FreezeWorkersAtTheFirstFlush(library)
    library.pipeline.checkpoints = freeze

    async def after_batch(n: int) -> None:
        control.stop.set()

    control.after_batch = after_batch
    try:
        outcomes = await ingest(library, [str(tmp_path / "many")], control)
    finally:
        freeze.thaw()
    assert len(freeze.frozen) == 2  # both workers were held (concurrency=2)
    assert library.pipeline._pool is None  # the workers were ended, not waited for
    assert len(outcomes) == 128 and sum(o.interrupted for o in outcomes) == 128 - await library.catalog.count()
    assert await library.catalog.count() == 4  # the first batch, and nothing after the stop
    await assert_no_blob_without_a_row(library)

    library.pipeline.checkpoints = Checkpoints()
    again = await ingest(library, [str(tmp_path / "many")], BulkControl(batch_size=32, chunk_size=8))
    assert all(o.ok for o in again) and await library.catalog.count() == 128
    assert library.pipeline._pool is not None
    await assert_no_blob_without_a_row(library)


async def test_a_worker_that_dies_after_writing_blobs_leaves_none(
    library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    """A worker that dies mid-chunk (a crash in a decoder) never answers, but it named each key in
    its chunk's journal before writing it: those blobs are deleted, its files fail INTERNAL, and
    the run goes on with a new pool.

    Mocked, and why: a real worker cannot be made to die at that point on demand. The stand-in
    pool runs the real worker function here (the blobs and the journal are real), then answers
    BrokenProcessPool, as concurrent.futures does for every chunk of a dead worker.
    """

    class WritesThenDies:
        def __init__(self) -> None:
            self.calls = 0

        def submit(self, fn, *args):  # type: ignore[no-untyped-def]
            self.calls += 1
            fn(*args)
            future: Future = Future()
            future.set_exception(BrokenProcessPool("A child process terminated abruptly"))
            return future

        def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
            pass

    distinct_mp3s(tmp_path / "many", 64, audio_factory("mp3").read_bytes())
    dying = WritesThenDies()
    library.pipeline._pool = dying  # type: ignore[assignment]
    outcomes = await ingest(library, [str(tmp_path / "many")], BulkControl(batch_size=8, chunk_size=4))
    failed = [o for o in outcomes if o.error]
    assert dying.calls >= 1 and len(failed) == 4 * dying.calls
    assert {o.error.code for o in failed} == {ErrorCode.INTERNAL}
    assert sum(o.created for o in outcomes) == 64 - len(failed)
    await assert_no_blob_without_a_row(library)


async def test_a_database_failure_right_after_a_commit_keeps_the_report_and_the_run(
    library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    """What is forced, and how: the files failed once before (a truncated MP3 at each path), so
    each successful batch then deletes their FAILED records right after its commit; the database
    refuses that delete for real (a trigger, ``refusing_failure_cleanup``), as a PostgreSQL that
    dies just after the commit does. The run used to end there with DATABASE_FAILED, the committed
    tracks unreported and the next batches' blobs orphaned."""
    folder = tmp_path / "retry"
    paths = distinct_mp3s(folder, 24, b"")
    broken = make_bad_file(tmp_path / "bad", "truncated", source_mp3=audio_factory("mp3")).read_bytes()
    for i, path in enumerate(paths):
        path.write_bytes(broken + bytes([i]))
    first = await ingest(library, [str(folder)], BulkControl(batch_size=8, chunk_size=4))
    assert {o.error.code for o in first if o.error} == {ErrorCode.INVALID_FORMAT} and len(first) == 24
    distinct_mp3s(folder, 24, audio_factory("mp3").read_bytes())  # the same paths, now good audio

    async with refusing_failure_cleanup(library.catalog):
        outcomes = await ingest(library, [str(folder)], BulkControl(batch_size=8, chunk_size=4))
    assert len(outcomes) == 24 and all(o.ok and o.created for o in outcomes)
    assert await library.catalog.count(TrackStatus.COMPLETED) == 24
    assert await library.catalog.count(TrackStatus.FAILED) == 24  # the stale records the database kept
    await assert_no_blob_without_a_row(library)


async def test_a_stop_never_takes_a_blob_another_ingest_has_just_claimed(
    library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    """The stop's sweep releases the run's journaled keys under the blob locks. Between two
    batches, another ingest (in its own task, as another process would: the locks are the
    database's) catalogues a file whose blob a worker of this run wrote but the run has not
    committed; then the run stops. That blob stays, because a row now references it; every other
    uncommitted blob goes. (A sweep that deleted "every key of the run no row *of the run*
    references" took it, leaving a COMPLETED row without its audio.)"""
    paths = distinct_mp3s(tmp_path / "many", 48, audio_factory("mp3").read_bytes())
    by_key = {audio_key(hashlib.sha256(p.read_bytes()).hexdigest(), "mp3"): p for p in paths}
    control = BulkControl(batch_size=8, chunk_size=4)
    claimed = []

    async def after_batch(n: int) -> None:
        committed = await referenced_keys(library)
        await apoll_until(lambda: bool(stored_keys(library) - committed), timeout_s=30,
                          what="a blob written for a file not yet committed")
        orphan = sorted(stored_keys(library) - committed)[0]
        track, created = await asyncio.create_task(library.pipeline.ingest_file(by_key[orphan]))
        assert created and track.blob_key == orphan
        claimed.append(track)
        control.stop.set()

    control.after_batch = after_batch
    outcomes = await ingest(library, [str(tmp_path / "many")], control)

    [track] = claimed
    assert sum(o.ok for o in outcomes) == 8 and any(o.interrupted for o in outcomes)
    assert track.blob_key in stored_keys(library)
    assert (await library.get(track.id)).status == TrackStatus.COMPLETED
    assert len(await referenced_keys(library)) == 9  # the first batch and the other ingest's row
    await assert_no_blob_without_a_row(library)


async def test_a_failed_batch_does_not_take_the_blob_a_later_twin_needs(
    library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    """Six files with the same bytes share one blob key; whichever chunk wrote it first recorded it.
    The database refuses the first batch for real (``rejecting_title``, dropped after that batch),
    so that batch's blobs are deleted; the twin catalogued by a later batch must still have its
    blob (the run writes it again)."""
    folder = tmp_path / "twins"
    folder.mkdir()
    data = audio_factory("flac", tags={"title": "Twin"}, artwork=True).read_bytes()
    for i in range(6):
        (folder / f"twin{i}.flac").write_bytes(data)
    refusal = contextlib.AsyncExitStack()
    await refusal.enter_async_context(rejecting_title(library.catalog, "Twin"))

    async def after_batch(n: int) -> None:
        await refusal.aclose()

    try:
        outcomes = await ingest(library, [str(folder)], BulkControl(batch_size=1, chunk_size=1, after_batch=after_batch))
    finally:
        await refusal.aclose()
    failed = [o for o in outcomes if o.error]
    assert failed and all(REJECTED in o.error.message for o in failed)  # the first batch, refused
    assert len(outcomes) == 6 and sum(o.created for o in outcomes) == 1
    [track] = (await library.list()).items
    assert stored_keys(library) == {track.blob_key, track.thumbnail_key} == await referenced_keys(library)


async def test_a_stop_cancels_a_download_in_progress(library: Library, http_server) -> None:  # noqa: ANN001
    """The server sends part of the body and then holds the connection: a stop cancels the
    download (only a temporary file existed), reports it INTERRUPTED and records no failure."""
    started, release = threading.Event(), threading.Event()

    def stalls(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "audio/mpeg")
        h.send_header("Content-Length", str(1 << 20))
        h.end_headers()
        h.wfile.write(b"ID3" + b"\0" * 4096)
        h.wfile.flush()
        started.set()
        release.wait(timeout=60)

    url = http_server.route("/stalls.mp3", stalls)
    control = BulkControl()
    try:
        run = asyncio.create_task(ingest(library, [url], control))
        assert await asyncio.to_thread(started.wait, 30)
        control.stop.set()
        [outcome] = await run
    finally:
        release.set()
    assert outcome.interrupted and outcome.to_dict()["status"] == "INTERRUPTED"
    assert await library.catalog.count(None) == 0
    assert stored_keys(library) == set()


# --- batches of one run: twins (the same bytes at two paths) share content-addressed keys ------


def _twins(library: Library, tmp_path: Path, audio_factory: AudioFactory) -> list[tuple[str, Path, Stored]]:
    """Two analysed files with the same bytes, as two chunks of one run leave them: the first wrote
    the blobs (and recorded them as created), the second found them there and recorded nothing."""
    data = audio_factory("flac", tags={"title": "Twin"}, artwork=True).read_bytes()
    twins = []
    for name in ("a.flac", "b.flac"):
        path = tmp_path / name
        path.write_bytes(data)
        [stored] = analyse_and_store(library.store, [(str(path), True)])
        assert isinstance(stored, Stored)
        twins.append((name, path, stored))
    assert len(twins[0][2].created) == 2 and twins[1][2].created == []
    return twins


async def test_a_failed_batch_then_its_twin_the_blobs_are_written_again(
    library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    """The batch holding the writer fails for real (``rejecting_title``) and releases the blobs it
    created; the batch holding the twin, which found them, writes them again before its commit
    (the claim checks them under their locks)."""
    writer, finder = _twins(library, tmp_path, audio_factory)
    async with rejecting_title(library.catalog, "Twin"):
        [failed] = await library.pipeline._catalog_batch([writer])
    assert failed.error is not None and failed.error.code == ErrorCode.DATABASE_FAILED
    assert stored_keys(library) == set()
    [done] = await library.pipeline._catalog_batch([finder])
    assert done.created and stored_keys(library) == set(writer[2].created) == await referenced_keys(library)


async def test_a_committed_twin_keeps_its_blobs_when_the_writer_is_dropped(
    library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    """The twin that found the blobs commits first; then the writer's batch fails for real, and a
    stopped run drops it: neither deletes the blobs the committed row references (a release
    deletes only what no row references, decided under the blobs' locks)."""
    writer, finder = _twins(library, tmp_path, audio_factory)
    [done] = await library.pipeline._catalog_batch([finder])
    assert done.created
    async with rejecting_title(library.catalog, "Twin"):
        [second] = await library.pipeline._catalog_batch([writer])
    assert second.error is not None and REJECTED in second.error.message
    assert await library.pipeline.lifetime.release(writer[2].created) == []  # what a stop does with a chunk it did not commit
    assert stored_keys(library) == set(writer[2].created) == await referenced_keys(library)
