"""The ingest pipeline: fetch -> sniff/analyse -> store blob -> write row, with its consistency rules.

* content is unique by sha256: ingesting the same bytes again returns the existing track;
* a failed ingest leaves no blob behind (unless the database cannot be reached to release them:
  ``loist fsck`` removes those) and at most a ``FAILED`` record with its error code;
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
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loist.catalog import Catalog
from loist.config import Settings
from loist.errors import Internal, InvalidArgument, LoistError, NotFound
from loist.ingest.analyze import Analysis, analyze
from loist.ingest.fetch import download_to_temp
from loist.ingest.netguard import AddressPolicy
from loist.ingest.sources import classify, walk_folder
from loist.ingest.tempspace import TempBudget
from loist.library.bulk import NewBlobs, Stored, analyse_and_store, bulk_worker, put_blobs
from loist.library.lifetime import BlobLifetime, Checkpoints
from loist.library.storage_pool import StoragePool
from loist.model import Source, Track, TrackStatus, new_track_id
from loist.storage.base import BlobStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int | None, int | None], Awaitable[None] | None]

# Bulk ingest writes rows in batches of this many; analysis runs in a process pool meanwhile.
BULK_BATCH = 256
ANALYSE_CHUNK = 32

FileInput = tuple[str, Path, bool]  # (input as given, path, named by the caller rather than found in a folder)


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

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"input": self.input}
        if self.skipped:
            out["status"] = "SKIPPED"
        elif self.track is not None:
            out.update(id=str(self.track.id), status=str(self.track.status), created=self.created)
            out["track"] = self.track.model_dump(mode="json")
        if self.error is not None:
            out["status"] = str(TrackStatus.FAILED)
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
            async with download_to_temp(
                url,
                budget=self._temp_budget,
                headers=headers,
                max_bytes=max_bytes,
                timeout_s=self.settings.download_timeout_s,
                policy=self._policy,
                progress=progress,
            ) as fetched:
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
    ) -> AsyncIterator[IngestOutcome]:
        """Ingest URLs, files and folders (recursively), yielding one outcome per item as it finishes.

        Local files are analysed in a process pool (both cores work) and catalogued in batches;
        URLs are downloaded concurrently, at most ``concurrency`` at a time. ``on_planned`` is told
        how many outcomes to expect once folders are walked (a progress bar's total).
        """
        workers = concurrency or self.settings.effective_ingest_concurrency
        queue: asyncio.Queue[IngestOutcome | None] = asyncio.Queue(maxsize=4 * BULK_BATCH)
        urls, files = _plan(inputs)
        if on_planned is not None:
            on_planned(len(urls) + len(files))

        async def run_urls() -> None:
            sem = asyncio.Semaphore(max(1, workers * 2))

            async def one(url: str) -> None:
                async with sem:
                    try:
                        track, created = await self.ingest_url(url)
                        await queue.put(IngestOutcome(url, track=track, created=created))
                    except LoistError as exc:
                        await queue.put(IngestOutcome(url, error=exc))

            await asyncio.gather(*(one(u) for u in urls))

        async def run_files() -> None:
            async for outcome in self._ingest_files_bulk(files, workers):
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

    def _executor(self, workers: int) -> Executor:
        if self._pool is None:
            import multiprocessing

            ctx = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
            if os.name == "posix":
                ctx.set_forkserver_preload(["loist.library.bulk"])
            self._pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
        return self._pool

    async def _ingest_files_bulk(self, files: list[FileInput], workers: int) -> AsyncIterator[IngestOutcome]:
        """Analyse and store blobs in a process pool; catalogue in batches from here.

        Files go to the pool in chunks of ``ANALYSE_CHUNK`` (one round trip per chunk, not per
        file), at most ``2 x workers`` chunks in flight. Workers write blobs without flushing; one
        ``store.sync()`` per catalogue batch makes them durable before any row points at them.

        A file met while walking a folder that does not look like audio is skipped (a cover.jpg is
        not a failure); a file the caller named is always analysed and fails if it is not audio. A
        worker that dies (a crash in a decoder) fails its chunk with ``INTERNAL`` and is replaced;
        the rest of the run goes on.
        """
        if not files:
            return
        loop = asyncio.get_running_loop()
        pool = self._executor(workers) if len(files) > ANALYSE_CHUNK and workers > 1 else None
        in_flight = asyncio.Semaphore(max(2, 2 * workers))
        chunks = [files[i : i + ANALYSE_CHUNK] for i in range(0, len(files), ANALYSE_CHUNK)]

        async def analyse(chunk: list[FileInput]) -> list[tuple[str, Path, Stored | LoistError | None]]:
            nonlocal pool
            job = [(str(path), named) for _, path, named in chunk]
            results: list[Stored | LoistError | None]
            async with in_flight:
                try:
                    if pool is not None:
                        results = await loop.run_in_executor(pool, bulk_worker, self.settings, job)
                    else:
                        results = await self.storage_pool.run(analyse_and_store, self.store, job)
                except BrokenProcessPool as exc:
                    log.error("an analysis worker died; its chunk of %d files fails", len(job))
                    if self._pool is pool:  # replace it once, for the chunks still to come
                        self._pool = None
                        pool = self._executor(workers)
                    results = [Internal(f"analysis worker died: {exc}") for _ in job]
            return [(raw, path, result) for (raw, path, _), result in zip(chunk, results, strict=True)]

        pending = [asyncio.create_task(analyse(chunk)) for chunk in chunks]
        batch: list[tuple[str, Path, Stored]] = []
        try:
            for fut in asyncio.as_completed(pending):
                for raw, path, result in await fut:
                    if result is None:
                        yield IngestOutcome(raw, skipped=True)
                    elif isinstance(result, LoistError):
                        await self._record_failure(_file_source(path), result)
                        yield IngestOutcome(raw, error=result)
                    else:
                        batch.append((raw, path, result))
                if len(batch) >= BULK_BATCH:
                    for outcome in await self._catalog_batch(batch):
                        yield outcome
                    batch = []
            if batch:
                for outcome in await self._catalog_batch(batch):
                    yield outcome
        finally:
            for task in pending:
                task.cancel()

    async def _catalog_batch(self, batch: list[tuple[str, Path, Stored]]) -> list[IngestOutcome]:
        """Flush the batch's blobs once, then write its rows in one transaction."""
        blobs = NewBlobs.for_files(self.store, [(path, stored) for _, path, stored in batch])
        tracks = [
            new_track(stored.analysis, _file_source(path), stored.blob_key, stored.thumbnail_key)
            for _, path, stored in batch
        ]
        try:
            results = await self.commit(tracks, blobs)
        except LoistError as exc:
            return [IngestOutcome(raw, error=exc) for raw, _, _ in batch]
        await self.catalog.clear_failures_many([str(path) for _, path, _ in batch])
        return [
            IngestOutcome(raw, track=track, created=created)
            for (raw, _, _), (track, created) in zip(batch, results, strict=True)
        ]


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
