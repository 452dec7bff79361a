"""The ingest pipeline: fetch -> sniff/analyse -> store blob -> write row, with its consistency rules.

* content is unique by sha256: ingesting the same bytes again returns the existing track;
* a failed ingest leaves no blob behind (unless the database cannot be reached to release them:
  ``loist fsck`` removes those) and at most a ``FAILED`` record with its error code;
* a bulk ingest stopped part-way (:class:`BulkControl`) keeps what it committed and leaves no blob
  for the rest, even from an analysis worker that never answered;
* no committed row points at a blob that is not durable.

:meth:`Pipeline.commit` is the one place rows meet the blobs written for them: flush the blobs,
then with their locks held check them (writing again any a concurrent delete removed) and insert
the rows in one transaction; on failure release the blobs this work created (only those:
content-addressed blobs that existed already belong to other rows). See
:mod:`loist.library.lifetime`. Single ingest, bulk ingest, seeding and ``loist import`` (through
``Library.import_tracks``) all end there.

``progress`` callbacks are ``(stage, done, total)`` with stages ``fetching`` (bytes),
``reading_tags``, ``storing``, ``cataloguing``; they may be sync or async.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loist.catalog import Catalog
from loist.config import Settings
from loist.errors import ErrorCode, Internal, Interrupted, InvalidArgument, LoistError, NotFound
from loist.ingest.analyze import Analysis, analyze
from loist.ingest.fetch import download
from loist.ingest.netguard import AddressPolicy
from loist.ingest.sources import classify, walk_folder
from loist.library.bulk import (
    STOPPED,
    ChunkFiles,
    NewBlobs,
    RunDir,
    Stored,
    analyse_and_store,
    bulk_worker,
    put_blobs,
    worker_init,
)
from loist.library.lifetime import BlobLifetime, Checkpoints
from loist.library.storage_pool import StoragePool
from loist.model import Source, Track, TrackStatus, new_track_id
from loist.storage.base import BlobStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int | None, int | None], Awaitable[None] | None]

# Bulk ingest writes rows in batches of this many; analysis runs in a process pool meanwhile.
BULK_BATCH = 256
ANALYSE_CHUNK = 32
DOWNLOAD_TEMP_PREFIX = "loist-dl-"  # a URL downloads into a temp folder named so (loist fsck finds leftovers)
STOP_GRACE_S = 10.0  # after a stop, how long chunks in flight may take before their workers are ended

FileInput = tuple[str, Path, bool]  # (input as given, path, named by the caller rather than found in a folder)
ChunkResult = list[tuple[str, Path, "Stored | LoistError | None"]]


@dataclass(slots=True)
class BulkControl:
    """How a caller steers one :meth:`Pipeline.ingest_many` run (the CLI: signals; tests: sizes, a hold point).

    Once ``stop`` is set no new work starts: downloads still fetching are cancelled, chunks in the
    analysis pool end at their next file (their workers are killed if they take longer than
    ``grace_s``), nothing more is committed, every blob written for work not committed is deleted,
    and each input not ingested is reported ``INTERRUPTED``. ``after_batch(n)`` is awaited once the
    outcomes of the n-th catalogue batch (committed or failed) are out.
    """

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    after_batch: Callable[[int], Awaitable[None]] | None = None
    batch_size: int = BULK_BATCH
    chunk_size: int = ANALYSE_CHUNK
    grace_s: float = STOP_GRACE_S


def _interrupted() -> Interrupted:
    return Interrupted(STOPPED)


@dataclass(slots=True)
class IngestOutcome:
    """What happened to one input of a bulk ingest (one per file found, URL or named file)."""

    input: str
    track: Track | None = None
    created: bool = False
    error: LoistError | None = None
    skipped: bool = False  # a non-audio file met while walking a folder

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def interrupted(self) -> bool:
        """Not ingested because the run was stopped (nothing was written for it)."""
        return isinstance(self.error, Interrupted)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input": self.input}
        if self.skipped:
            out["status"] = "SKIPPED"
        elif self.track is not None:
            out.update(id=str(self.track.id), status=str(self.track.status), created=self.created)
            out["track"] = self.track.model_dump(mode="json")
        if self.error is not None:
            out["status"] = "INTERRUPTED" if self.interrupted else str(TrackStatus.FAILED)
            out["error"] = self.error.to_dict()
        return out


async def _emit(progress: Progress | None, stage: str, done: int | None = None, total: int | None = None) -> None:
    if progress is None:
        return
    result = progress(stage, done, total)
    if inspect.isawaitable(result):
        await result


def _now() -> datetime:
    return datetime.now(UTC)


def _file_source(path: Path) -> Source:
    return Source(type="file", location=str(path), original_filename=path.name)


def new_track(analysis: Analysis, source: Source, blob_key: str, thumb_key: str | None) -> Track:
    """The COMPLETED row for an analysed file whose blobs are stored under these keys."""
    now = _now()
    return Track(
        id=new_track_id(),
        status=TrackStatus.COMPLETED,
        attempts=1,
        source=source,
        sha256=analysis.sha256,
        size_bytes=analysis.size_bytes,
        audio=analysis.audio,
        tags=analysis.tags,
        artwork=analysis.artwork,
        blob_key=blob_key,
        thumbnail_key=thumb_key,
        created_at=now,
        updated_at=now,
    )


class Pipeline:
    """Ingest into one catalog and blob store; owns the analysis process pool (``close`` ends it)."""

    def __init__(self, settings: Settings, catalog: Catalog, store: BlobStore, storage_pool: StoragePool) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.storage_pool = storage_pool  # every blocking store call runs here (loist.library.storage_pool)
        self._policy = AddressPolicy(allow_private=settings.allow_private_urls)
        self._pool: Executor | None = None
        self.lifetime = BlobLifetime(catalog, store, storage_pool)

    @property
    def checkpoints(self) -> Checkpoints:
        """The named points of ingest and delete (a test replaces them to force an interleaving)."""
        return self.lifetime.checkpoints

    @checkpoints.setter
    def checkpoints(self, value: Checkpoints) -> None:
        self.lifetime.checkpoints = value

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    # --- rows meet their blobs -------------------------------------------------------------------
    async def commit(self, tracks: Sequence[Track], blobs: NewBlobs) -> list[tuple[Track, bool]]:
        """Flush ``blobs``, then insert ``tracks`` in one transaction (each deduplicated by sha256),
        their blobs verified with their locks held (``BlobLifetime.claim``).

        On any failure the blobs ``blobs`` created are released and the error is raised.
        """
        return await self.lifetime.claim(tracks, blobs)

    async def discard(self, blobs: NewBlobs) -> None:
        """Release the blobs a failed unit of work created (those no row references)."""
        await self.lifetime.discard(blobs)

    # --- one input -------------------------------------------------------------------------------
    async def ingest_url(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        filename: str | None = None,
        max_size_mb: float | None = None,
        progress: Progress | None = None,
    ) -> tuple[Track, bool]:
        """Download, analyse, store and catalogue one URL; ``(track, created)``."""
        max_bytes = self.settings.max_file_size_bytes
        if max_size_mb is not None:
            if max_size_mb <= 0:
                raise InvalidArgument("maxSizeMB must be positive")
            max_bytes = min(max_bytes, int(max_size_mb * 1024 * 1024))
        source = Source(type="http_url", location=url, original_filename=filename)
        try:
            with tempfile.TemporaryDirectory(prefix=DOWNLOAD_TEMP_PREFIX) as tmp:
                fetched = await download(
                    url,
                    Path(tmp) / "download",
                    headers=headers,
                    max_bytes=max_bytes,
                    timeout_s=self.settings.download_timeout_s,
                    policy=self._policy,
                    progress=progress,
                )
                source = source.model_copy(update={"original_filename": filename or fetched.filename})
                await _emit(progress, "reading_tags")
                analysis = await asyncio.to_thread(analyze, fetched.path, original_filename=source.original_filename)
                return await self._store_and_catalog(analysis, fetched.path, source, progress)
        except LoistError as exc:
            await self._record_failure(source, exc)
            raise

    async def ingest_file(self, path: Path, *, progress: Progress | None = None) -> tuple[Track, bool]:
        """Analyse, store and catalogue one local file; ``(track, created)``."""
        source = _file_source(path)
        try:
            if not path.is_file():
                raise NotFound(f"no such file: {path}")
            await _emit(progress, "reading_tags")
            analysis = await asyncio.to_thread(analyze, path, original_filename=path.name)
            return await self._store_and_catalog(analysis, path, source, progress)
        except LoistError as exc:
            await self._record_failure(source, exc)
            raise

    async def _record_failure(self, source: Source, exc: LoistError) -> None:
        if source.location is None:
            return
        try:
            await self.catalog.record_failure(source, str(exc.code), exc.message)
        except LoistError:  # the database itself may be what failed: the original error wins
            log.warning("could not record failed ingest of %s", source.location, exc_info=True)

    async def _store_and_catalog(
        self, analysis: Analysis, path: Path, source: Source, progress: Progress | None
    ) -> tuple[Track, bool]:
        existing = await self.catalog.get_by_sha256(analysis.sha256)
        await self.checkpoints.reached("looked_up")
        thumbnail = analysis.thumbnail is not None
        if existing is not None and (current := await self.lifetime.confirm(existing, thumbnail=thumbnail)):
            await self._clear_failures(source)
            return current, False
        # New bytes, or a row that was deleted meanwhile or lost its blobs: write them (the
        # commit re-checks under the blob locks, and repairs a row that is there but broken).
        await _emit(progress, "storing")
        blobs = NewBlobs(self.store)
        try:
            key, thumb = await self.storage_pool.run(put_blobs, blobs, analysis, path)
        except BaseException:
            await self.lifetime.discard(blobs)
            raise
        await self.checkpoints.reached("stored")
        await _emit(progress, "cataloguing")
        [(track, created)] = await self.commit([new_track(analysis, source, key, thumb)], blobs)
        await self.checkpoints.reached("committed")
        await self._clear_failures(source)
        return track, created

    async def _clear_failures(self, source: Source) -> None:
        if source.location is not None:
            await self.catalog.clear_failures(source.location)

    # --- many inputs -----------------------------------------------------------------------------
    async def ingest_many(
        self,
        inputs: Iterable[str],
        *,
        concurrency: int | None = None,
        on_planned: Callable[[int], None] | None = None,
        control: BulkControl | None = None,
    ) -> AsyncIterator[IngestOutcome]:
        """Ingest URLs, files and folders (recursively), yielding one outcome per item as it finishes.

        Local files are analysed in a process pool (both cores work) and catalogued in batches;
        URLs are downloaded concurrently, at most ``concurrency`` at a time. ``on_planned`` is told
        how many outcomes to expect once folders are walked (a progress bar's total). ``control``
        can stop the run early (see :class:`BulkControl`); every input still gets one outcome.
        """
        workers = concurrency or self.settings.effective_ingest_concurrency
        control = control or BulkControl()
        queue: asyncio.Queue[IngestOutcome | None] = asyncio.Queue(maxsize=4 * BULK_BATCH)
        urls, files = _plan(inputs)
        if on_planned is not None:
            on_planned(len(urls) + len(files))

        async def run_urls() -> None:
            sem = asyncio.Semaphore(max(1, workers * 2))

            async def one(url: str) -> None:
                async with sem:
                    await queue.put(await self._url_outcome(url, control.stop))

            await asyncio.gather(*(one(u) for u in urls))

        async def run_files() -> None:
            async with contextlib.aclosing(self._ingest_files_bulk(files, workers, control)) as outcomes:
                async for outcome in outcomes:
                    await queue.put(outcome)

        async def run_all() -> None:
            try:
                await asyncio.gather(run_urls(), run_files())
            finally:
                await queue.put(None)

        task = asyncio.create_task(run_all())
        try:
            while (item := await queue.get()) is not None:
                yield item
            await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _url_outcome(self, url: str, stop: asyncio.Event) -> IngestOutcome:
        """Ingest one URL of a bulk run; a stop cancels it while it is still downloading (which
        writes nothing but a temporary file), never once it analyses, stores or catalogues."""
        if stop.is_set():
            return IngestOutcome(url, error=_interrupted())
        stage = "fetching"

        def progress(name: str, done: int | None, total: int | None) -> None:
            nonlocal stage
            stage = name

        ingest = asyncio.create_task(self.ingest_url(url, progress=progress))
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({ingest, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not ingest.done() and stage == "fetching":  # the task is parked inside the download
                ingest.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await ingest
                if ingest.cancelled():
                    return IngestOutcome(url, error=_interrupted())
            track, created = await ingest
            return IngestOutcome(url, track=track, created=created)
        except LoistError as exc:
            return IngestOutcome(url, error=exc)
        finally:
            stopped.cancel()

    def _executor(self, workers: int) -> Executor:
        if self._pool is None:
            import multiprocessing

            ctx = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
            if os.name == "posix":
                ctx.set_forkserver_preload(["loist.library.bulk"])
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=worker_init)
        return self._pool

    def _end_pool(self) -> None:
        """Kill the analysis workers now: chunks of a stopped run outlived the grace period.

        ``concurrent.futures`` has no public way to end busy workers before Python 3.14
        (``terminate_workers``), so this reaches for the pool's process table. Their chunks then
        fail with ``BrokenProcessPool`` and are cleaned up from their journals.
        """
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.kill()
        pool.shutdown(wait=False)  # queued chunks then fail with BrokenProcessPool too

    def _ingest_files_bulk(self, files: list[FileInput], workers: int, control: BulkControl) -> AsyncIterator[IngestOutcome]:
        """Analyse and store blobs in a process pool; catalogue in batches from here (see :class:`_FileRun`)."""
        return _FileRun(self, files, workers, control).outcomes()

    async def _catalog_batch(self, batch: list[tuple[str, Path, Stored]]) -> list[IngestOutcome]:
        """Write a batch's rows in one transaction through the one commit (``BlobLifetime.claim``):
        the workers' blobs flushed once, then checked with their locks held, and any that is gone
        (an earlier failed batch of the run released a twin's blob, or a concurrent delete did) is
        written again from its file before the rows go in.

        If the transaction fails, each file of the batch fails with its code and the blobs the
        batch created are released under their locks (a blob a committed row references, a twin's
        from an earlier batch or another process's, stays). What follows a commit cannot undo it:
        if clearing the files' old ``FAILED`` records fails (the database went away just after the
        commit), the tracks are still reported ingested.
        """
        blobs = NewBlobs.for_files(self.store, [(path, stored) for _, path, stored in batch])
        tracks = [
            new_track(stored.analysis, _file_source(path), stored.blob_key, stored.thumbnail_key)
            for _, path, stored in batch
        ]
        try:
            results = await self.commit(tracks, blobs)
        except LoistError as exc:
            return [IngestOutcome(raw, error=exc) for raw, _, _ in batch]
        try:
            await self.catalog.clear_failures_many([str(path) for _, path, _ in batch])
        except LoistError as exc:
            log.warning("%d files were catalogued, but their earlier FAILED records remain: %s", len(batch), exc)
        return [IngestOutcome(raw, track=track, created=new) for (raw, _, _), (track, new) in zip(batch, results, strict=True)]


class _FileRun:
    """One bulk run over local files: chunks to the analysis pool, batches to the catalogue.

    Files go to the pool in chunks (one round trip per chunk, not per file), at most ``2 x
    workers`` chunks in flight. Workers write blobs without flushing; one ``store.sync()`` per
    catalogue batch makes them durable before any row points at them.

    A file met while walking a folder that does not look like audio is skipped (a cover.jpg is
    not a failure); a file the caller named is always analysed and fails if it is not audio. A
    chunk whose answer is lost (its worker died in a decoder) fails with ``INTERNAL``, the blobs
    its journal names are released (under their locks, only those no row references), and a dead
    pool is replaced; the rest of the run goes on.

    When the run stops (``control.stop``), ends with an error, or its reader goes away, it winds
    down: no new chunk starts, chunks in flight are collected, and nothing not committed keeps a blob.
    """

    def __init__(self, pipeline: Pipeline, files: list[FileInput], workers: int, control: BulkControl) -> None:
        self.p = pipeline
        self.control = control
        self.workers = workers
        size = control.chunk_size
        self.chunks = [files[i : i + size] for i in range(0, len(files), size)]
        self.use_pool = len(files) > size and workers > 1
        self.pool: Executor | None = None
        self.in_flight = asyncio.Semaphore(max(2, 2 * workers))
        self.dir: RunDir
        self.batch: list[tuple[str, Path, Stored]] = []
        self.batches = 0
        self.must_sweep = False  # blobs may have been left by failed work (their release may have failed)

    async def outcomes(self) -> AsyncIterator[IngestOutcome]:
        if not self.chunks:
            return
        self.pool = self.p._executor(self.workers) if self.use_pool else None
        self.dir = RunDir()
        stop = self.control.stop
        pending = {asyncio.create_task(self._analyse(n, chunk)) for n, chunk in enumerate(self.chunks)}
        stopped = asyncio.create_task(stop.wait())
        wound_down = False
        try:
            while (pending or self.batch) and not stop.is_set():
                if pending:
                    done, _ = await asyncio.wait(pending | {stopped}, return_when=asyncio.FIRST_COMPLETED)
                    for task in done - {stopped}:
                        pending.discard(task)
                        for outcome in await self._sort(task.result()):
                            yield outcome
                while self._batch_due(pending) and not stop.is_set():
                    batch, self.batch = self.batch[: self.control.batch_size], self.batch[self.control.batch_size :]
                    for outcome in await self.p._catalog_batch(batch):
                        self.must_sweep |= outcome.error is not None
                        yield outcome
                    self.batches += 1
                    if self.control.after_batch is not None:
                        await self.control.after_batch(self.batches)
            rest = await self._wind_down(pending, sweep=stop.is_set() or self.must_sweep)
            wound_down = True
            for outcome in rest:
                yield outcome
        finally:
            stopped.cancel()
            try:
                if not wound_down:  # an error, or the reader stopped early: clean up, nobody to tell
                    await self._wind_down(pending, sweep=True)
            finally:
                self.dir.remove()

    def _batch_due(self, pending: set[asyncio.Task[ChunkResult]]) -> bool:
        """A full batch is waiting (batches never grow past ``batch_size``), or the last one is."""
        return len(self.batch) >= self.control.batch_size or (bool(self.batch) and not pending)

    async def _analyse(self, number: int, chunk: list[FileInput]) -> ChunkResult:
        job = [(str(path), named) for _, path, named in chunk]
        async with self.in_flight:
            if self.control.stop.is_set():
                results: list[Stored | LoistError | None] = [_interrupted() for _ in job]
            else:
                results = await self._run_chunk(job, self.dir.chunk(number))
        return [(raw, path, result) for (raw, path, _), result in zip(chunk, results, strict=True)]

    async def _run_chunk(self, job: list[tuple[str, bool]], files: ChunkFiles) -> list[Stored | LoistError | None]:
        pool = self.pool
        try:
            if pool is not None:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(pool, bulk_worker, self.p.settings, job, files)
            return await self.p.storage_pool.run(analyse_and_store, self.p.store, job, files)
        except (Exception, asyncio.CancelledError) as exc:  # the chunk's answer is lost, whatever lost it
            task = asyncio.current_task()
            if isinstance(exc, asyncio.CancelledError) and (task is None or task.cancelling()):
                raise  # this run is being cancelled, not just the pool's future
            self.must_sweep = True
            await self._release(files.keys())  # every blob its worker may have written
            if self.control.stop.is_set():
                return [_interrupted() for _ in job]
            if not isinstance(exc, BrokenProcessPool):
                log.exception("analysing a chunk of %d files failed", len(job))
                return [Internal(f"analysis failed: {type(exc).__name__}") for _ in job]
            log.error("an analysis worker died; its chunk of %d files fails", len(job))
            if pool is not None and self.pool is pool:  # replace it once, for the chunks still to come
                if self.p._pool is pool:
                    self.p._pool = None
                self.pool = self.p._executor(self.workers)
            return [Internal(f"analysis worker died: {exc}") for _ in job]

    async def _release(self, keys: list[str]) -> None:
        """Delete the blobs among ``keys`` no row references, under their locks (never a blob a
        committed row, of this run or another process, references); if the database is what
        failed they stay, logged, for ``loist fsck``."""
        await self.p.lifetime.discard(NewBlobs(self.p.store, created=keys))

    async def _sort(self, results: ChunkResult) -> list[IngestOutcome]:
        """Outcomes for the files of a chunk that are done (skipped, failed); the rest join the batch."""
        out: list[IngestOutcome] = []
        for raw, path, result in results:
            if result is None:
                out.append(IngestOutcome(raw, skipped=True))
            elif isinstance(result, LoistError):
                if not isinstance(result, Interrupted):
                    self.must_sweep |= result.code == ErrorCode.STORAGE_FAILED  # it may have written part
                    await self.p._record_failure(_file_source(path), result)
                out.append(IngestOutcome(raw, error=result))
            else:
                self.batch.append((raw, path, result))
        return out

    async def _wind_down(self, pending: set[asyncio.Task[ChunkResult]], *, sweep: bool) -> list[IngestOutcome]:
        """Stop the workers at their next file and collect the chunks in flight (ending their
        workers after the grace period). Files analysed but not committed are reported
        ``INTERRUPTED``. With ``sweep`` (the run did not finish, or work failed on the way and the
        release of its blobs may not have reached the database), every key a worker of this run
        named in a journal is released: deleted, under its lock, if no row references it."""
        self.dir.stop()
        out: list[IngestOutcome] = []
        if pending:
            done, late = await asyncio.wait(pending, timeout=self.control.grace_s)
            if late:
                log.warning("%d analysis chunks still busy %.0fs after the stop: ending their workers",
                            len(late), self.control.grace_s)
                self.p._end_pool()
                done |= (await asyncio.wait(late))[0]
            for task in done:
                if not task.cancelled():
                    out += await self._sort(task.result())
            pending.clear()
        batch, self.batch = self.batch, []
        if sweep:
            await self._release(self.dir.keys())
        return out + [IngestOutcome(raw, error=_interrupted()) for raw, _, _ in batch]


def _plan(inputs: Iterable[str]) -> tuple[list[str], list[FileInput]]:
    """Split inputs into URLs and files, walking folders (a walked file is not named by the caller)."""
    urls: list[str] = []
    files: list[FileInput] = []
    for raw in inputs:
        kind = classify(raw)
        if kind == "url":
            urls.append(raw)
        elif kind == "folder":
            files.extend((str(found), found, False) for found in walk_folder(Path(raw)))
        else:
            files.append((raw, Path(raw), True))
    return urls, files
