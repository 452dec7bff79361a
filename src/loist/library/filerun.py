"""One bulk run over local files (:class:`FileRun`), and what steers and reports it.

:class:`BulkControl` is how a caller steers :meth:`Pipeline.ingest_many` (a stop, batch and chunk
sizes, a hold point between batches); :class:`IngestOutcome` is what it reports per input. The run
sends chunks of files to the analysis pool and commits batches through the pipeline
(:class:`RunHost`), and every blob it deletes goes through the locked release of
:mod:`loist.library.lifetime`: never a blob a row references, of this run or of a concurrent ingest.
Kept apart from ``pipeline.py``, which imports it (this module does not import the pipeline).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loist.config import Settings
from loist.errors import ErrorCode, Internal, Interrupted, LoistError
from loist.library.bulk import STOPPED, ChunkFiles, NewBlobs, RunDir, Stored, analyse_and_store, bulk_worker
from loist.library.lifetime import BlobLifetime
from loist.library.storage_pool import StoragePool
from loist.model import Source, Track, TrackStatus
from loist.storage.base import BlobStore

log = logging.getLogger(__name__)

# Bulk ingest writes rows in batches of this many; analysis runs in a process pool meanwhile.
BULK_BATCH = 256
ANALYSE_CHUNK = 32
STOP_GRACE_S = 10.0  # after a stop, how long chunks in flight may take before their workers are ended

FileInput = tuple[str, Path, bool]  # (input as given, path, named by the caller rather than found in a folder)
ChunkResult = list[tuple[str, Path, "Stored | LoistError | None"]]


@dataclass(slots=True)
class BulkControl:
    """How a caller steers one :meth:`Pipeline.ingest_many` run (the CLI: signals; tests: sizes, a hold point).

    Once ``stop`` is set no new work starts: downloads still fetching are cancelled, chunks in the
    analysis pool end at their next file (their workers are killed if they take longer than
    ``grace_s``), nothing more is committed, every blob written for work not committed is released
    (deleted under its lock unless a row references it), and each input not ingested is reported
    ``INTERRUPTED``. ``after_batch(n)`` is awaited once the outcomes of the n-th catalogue batch
    (committed or failed) are out.
    """

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    after_batch: Callable[[int], Awaitable[None]] | None = None
    batch_size: int = BULK_BATCH
    chunk_size: int = ANALYSE_CHUNK
    grace_s: float = STOP_GRACE_S


def interrupted() -> Interrupted:
    return Interrupted(STOPPED)


SKIP_REASON = "not audio (its first bytes are no audio format Loist reads)"


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
            out["reason"] = SKIP_REASON
        elif self.track is not None:
            out.update(id=str(self.track.id), status=str(self.track.status), created=self.created)
            out["track"] = self.track.model_dump(mode="json")
        if self.error is not None:
            out["status"] = "INTERRUPTED" if self.interrupted else str(TrackStatus.FAILED)
            out["error"] = self.error.to_dict()
        return out


def file_source(path: Path) -> Source:
    return Source(type="file", location=str(path), original_filename=path.name)


class RunHost(Protocol):
    """What a run needs of its pipeline (``Pipeline`` is the one host)."""

    settings: Settings
    store: BlobStore
    storage_pool: StoragePool
    lifetime: BlobLifetime
    _pool: Executor | None

    def _executor(self, workers: int) -> Executor: ...

    def _end_pool(self) -> None: ...

    async def _catalog_batch(self, batch: list[tuple[str, Path, Stored]]) -> list[IngestOutcome]: ...

    async def _record_failure(self, source: Source, exc: LoistError) -> None: ...


class FileRun:
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

    def __init__(self, pipeline: RunHost, files: list[FileInput], workers: int, control: BulkControl) -> None:
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
                results: list[Stored | LoistError | None] = [interrupted() for _ in job]
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
            if isinstance(exc, BrokenProcessPool):
                await _pending_signals_handled()
            if self.control.stop.is_set():
                return [interrupted() for _ in job]
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
                    await self.p._record_failure(file_source(path), result)
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
        return out + [IngestOutcome(raw, error=interrupted()) for raw, _, _ in batch]


async def _pending_signals_handled() -> None:
    """Let the event loop run a stop signal's handler that is already on its way. A signal sent to
    the whole process group (Ctrl-C, a service manager's SIGTERM) kills the analysis workers as it
    reaches this process, and the broken pool may be reported first: the loop reads the signal from
    its wakeup pipe in one turn and runs the handler in the next, so a chunk lost to the stop is
    INTERRUPTED, not failed. No waiting: a few turns of the loop, nothing more."""
    for _ in range(3):
        await asyncio.sleep(0)
