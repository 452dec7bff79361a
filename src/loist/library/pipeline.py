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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing.context import BaseContext
from pathlib import Path

from loist.catalog import Catalog
from loist.config import Settings
from loist.errors import InvalidArgument, LoistError, NotFound
from loist.ingest.analyze import Analysis, analyze
from loist.ingest.fetch import download_to_temp
from loist.ingest.netguard import AddressPolicy
from loist.ingest.sources import classify, walk_folder
from loist.ingest.tempspace import TempBudget
from loist.library.bulk import NewBlobs, Stored, put_blobs, worker_init
from loist.library.datadir import library_folders
from loist.library.filerun import (
    BULK_BATCH,
    BulkControl,
    FileInput,
    FileRun,
    IngestOutcome,
    file_source,
    interrupted,
)
from loist.library.lifetime import BlobLifetime, Checkpoints
from loist.library.storage_pool import StoragePool
from loist.model import Source, Track, TrackStatus, new_track_id
from loist.storage.base import BlobStore
from loist.telemetry import metrics

log = logging.getLogger(__name__)

Progress = Callable[[str, int | None, int | None], Awaitable[None] | None]


async def _emit(
    progress: Progress | None, stage: str, done: int | None = None, total: int | None = None
) -> None:
    if progress is None:
        return
    result = progress(stage, done, total)
    if inspect.isawaitable(result):
        await result


def _now() -> datetime:
    return datetime.now(UTC)


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

    def __init__(
        self, settings: Settings, catalog: Catalog, store: BlobStore, storage_pool: StoragePool
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.storage_pool = storage_pool  # every blocking store call runs here (loist.library.storage_pool)
        self._policy = AddressPolicy(allow_private=settings.allow_private_urls)
        self._temp_budget = TempBudget(settings.download_temp_budget_bytes)  # shared by every URL ingest
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
            async with contextlib.AsyncExitStack() as stack:
                counted = stack.enter_context(metrics.ingesting("url"))
                with metrics.stage("fetch"):
                    fetched = await stack.enter_async_context(download_to_temp(
                        url,
                        budget=self._temp_budget,
                        headers=headers,
                        max_bytes=max_bytes,
                        timeout_s=self.settings.download_timeout_s,
                        policy=self._policy,
                        progress=progress,
                    ))
                source = source.model_copy(update={"original_filename": filename or fetched.filename})
                await _emit(progress, "reading_tags")
                with metrics.stage("analyze"):
                    analysis = await asyncio.to_thread(
                        analyze, fetched.path, original_filename=source.original_filename
                    )
                track, created = await self._store_and_catalog(analysis, fetched.path, source, progress)
                counted.nbytes = track.size_bytes
                return track, created
        except LoistError as exc:
            await self._record_failure(source, exc)
            raise

    async def ingest_file(self, path: Path, *, progress: Progress | None = None) -> tuple[Track, bool]:
        """Analyse, store and catalogue one local file; ``(track, created)``."""
        source = file_source(path)
        try:
            with metrics.ingesting("file") as counted:
                if not path.is_file():
                    raise NotFound(f"no such file: {path}")
                await _emit(progress, "reading_tags")
                with metrics.stage("analyze"):
                    analysis = await asyncio.to_thread(analyze, path, original_filename=path.name)
                track, created = await self._store_and_catalog(analysis, path, source, progress)
                counted.nbytes = track.size_bytes
                return track, created
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
            with metrics.stage("store"):
                key, thumb = await self.storage_pool.run(put_blobs, blobs, analysis, path)
        except BaseException:
            await self.lifetime.discard(blobs)
            raise
        await self.checkpoints.reached("stored")
        await _emit(progress, "cataloguing")
        with metrics.stage("catalog"):
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
        urls, files = _plan(inputs, skip=library_folders(self.settings))
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
                    if not outcome.skipped:  # counted here, in the parent: workers report nothing
                        size = outcome.track.size_bytes if outcome.track is not None else None
                        metrics.ingest_finished("file", metrics.outcome_of(outcome.error), size)
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
            return IngestOutcome(url, error=interrupted())
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
                    return IngestOutcome(url, error=interrupted())
            track, created = await ingest
            return IngestOutcome(url, track=track, created=created)
        except LoistError as exc:
            return IngestOutcome(url, error=exc)
        finally:
            stopped.cancel()

    def _executor(self, workers: int) -> Executor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(), initializer=worker_init)
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

    def _ingest_files_bulk(
        self, files: list[FileInput], workers: int, control: BulkControl
    ) -> AsyncIterator[IngestOutcome]:
        """Analyse and store blobs in a process pool; catalogue in batches from here (see ``filerun.FileRun``)."""
        return FileRun(self, files, workers, control).outcomes()

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
            new_track(stored.analysis, file_source(path), stored.blob_key, stored.thumbnail_key)
            for _, path, stored in batch
        ]
        try:
            results = await self.commit(tracks, blobs)
        except LoistError as exc:
            return [IngestOutcome(raw, error=exc) for raw, _, _ in batch]
        try:
            await self.catalog.clear_failures_many([str(path) for _, path, _ in batch])
        except LoistError as exc:
            log.warning(
                "%d files were catalogued, but their earlier FAILED records remain: %s", len(batch), exc
            )
        return [
            IngestOutcome(raw, track=track, created=new)
            for (raw, _, _), (track, new) in zip(batch, results, strict=True)
        ]


def _worker_context() -> BaseContext:
    """How analysis workers start: forked from a server that has imported the analysis code once."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
    if os.name == "posix":
        ctx.set_forkserver_preload(["loist.library.bulk"])
    return ctx


def start_workers_early() -> None:
    """Start the analysis workers' fork server now, in the background.

    It imports the analysis code (mutagen, Pillow, the blob store) in its own process, so a command
    that is about to ingest files can open (and on first use migrate) its catalog meanwhile instead
    of after: on two cores the two start-up costs overlap. The pool forks its workers from this
    server when the first chunk is sent; without this call it starts the server then.
    """
    if _worker_context().get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _plan(inputs: Iterable[str], *, skip: list[tuple[str, Path]]) -> tuple[list[str], list[FileInput]]:
    """Split inputs into URLs and files, walking folders (a walked file is not named by the caller;
    the library's own folders in ``skip`` are not walked: re-ingesting a folder that holds the
    library never reads its blobs back in)."""
    urls: list[str] = []
    files: list[FileInput] = []
    for raw in inputs:
        kind = classify(raw)
        if kind == "url":
            urls.append(raw)
        elif kind == "folder":
            walked = walk_folder(Path(raw), skip=[folder for _, folder in skip])
            files.extend((str(found), found, False) for found in walked)
        else:
            files.append((raw, Path(raw), True))
    return urls, files
