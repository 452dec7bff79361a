"""The library service: the one facade every entry point (MCP, web, CLI) calls.

It orchestrates the engines, which never call each other:
fetch -> sniff/analyse -> store blob -> write row. It owns the consistency rules:

* content is unique by sha256: ingesting the same bytes again returns the existing track;
* a failed ingest leaves no blob behind and at most a ``FAILED`` record with its error code;
* a blob is deleted only when no row references it any more.

``progress`` callbacks are ``(stage, done, total)`` with stages ``fetching`` (bytes),
``reading_tags``, ``storing``, ``cataloguing``; they may be sync or async.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import logging
import os
import time
import uuid
import wave
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from loist.catalog import Catalog
from loist.config import Settings
from loist.errors import Internal, InvalidArgument, LoistError, NotFound
from loist.ingest.analyze import Analysis, analyze
from loist.ingest.fetch import download_to_temp
from loist.ingest.netguard import AddressPolicy
from loist.ingest.sources import classify, walk_folder
from loist.ingest.tempspace import TempBudget
from loist.library.bulk import Stored, analyse_and_store, bulk_worker, put_blobs
from loist.model import (
    TAG_FIELDS,
    SearchRequest,
    SearchResult,
    Source,
    Tags,
    TagsPatch,
    Track,
    TrackPage,
    TrackStatus,
    new_track_id,
)
from loist.storage import open_blob_store
from loist.storage.base import BlobInfo, BlobStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int | None, int | None], Awaitable[None] | None]

# Bulk ingest writes rows in batches of this many; analysis runs in a process pool meanwhile.
BULK_BATCH = 256
ANALYSE_CHUNK = 32
SYNTHETIC_BLOB_KEY = "audio/synthetic/silence.wav"


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


class Library:
    """One open library: a catalog, a blob store and the settings they were built from."""

    def __init__(self, settings: Settings, catalog: Catalog, store: BlobStore) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self._policy = AddressPolicy(allow_private=settings.allow_private_urls)
        self._temp_budget = TempBudget(settings.download_temp_budget_bytes)  # shared by every URL ingest
        self._pool: Executor | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool | None = None) -> Library:
        """Open the catalog and the blob store.

        The embedded default (SQLite) migrates itself so a new user needs no set-up. Server
        databases are migrated by ``loist db upgrade`` (a deploy step); opening one whose schema
        is behind is refused with a clear error instead of running migrations from every instance.
        """
        if settings.database_dialect == "sqlite":
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        catalog = Catalog.from_url(
            settings.sqlalchemy_url(), pool_size=settings.db_pool_size, write_timeout_s=settings.sqlite_write_timeout_s
        )
        try:
            if migrate is None:
                migrate = settings.database_dialect == "sqlite"
            if migrate:
                await catalog.ensure_schema()
            else:
                await catalog.check_schema()
            store = await asyncio.to_thread(open_blob_store, settings)
        except BaseException:
            await catalog.close()
            raise
        return cls(settings, catalog, store)

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        await self.catalog.close()

    async def __aenter__(self) -> Library:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- public URLs (always from EMBED_BASE_URL) ------------------------------------------------
    def embed_url(self, track_id: uuid.UUID | str) -> str:
        return f"{self.settings.public_base_url}/embed/{track_id}"

    def stream_url(self, track_id: uuid.UUID | str) -> str:
        return f"{self.settings.public_base_url}/audio/{track_id}/stream"

    def thumbnail_url(self, track: Track) -> str | None:
        if not track.thumbnail_key:
            return None
        return f"{self.settings.public_base_url}/audio/{track.id}/thumbnail"

    def oembed_url(self, track_id: uuid.UUID | str) -> str:
        from urllib.parse import quote

        return f"{self.settings.public_base_url}/oembed?url={quote(self.embed_url(track_id), safe='')}"

    # --- ingest ----------------------------------------------------------------------------------
    async def ingest_url(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        filename: str | None = None,
        mime_type: str | None = None,
        max_size_mb: float | None = None,
        progress: Progress | None = None,
    ) -> Track:
        """Download, analyse, store and catalogue one URL.

        ``mime_type`` is accepted as a caller's hint only: the format is always recognised from
        the bytes. ``max_size_mb`` can lower the server's limit, never raise it.
        """
        track, _ = await self._ingest_url(
            url, headers=headers, filename=filename, max_size_mb=max_size_mb, progress=progress
        )
        return track

    async def _ingest_url(
        self,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        filename: str | None = None,
        max_size_mb: float | None = None,
        progress: Progress | None = None,
    ) -> tuple[Track, bool]:
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

    async def ingest_file(self, path: str | Path, *, progress: Progress | None = None) -> Track:
        """Analyse, store and catalogue one local file."""
        track, _ = await self._ingest_file(Path(path), progress=progress)
        return track

    async def _ingest_file(self, path: Path, *, progress: Progress | None = None) -> tuple[Track, bool]:
        source = Source(type="file", location=str(path), original_filename=path.name)
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

    def _new_track(self, analysis: Analysis, source: Source, blob_key: str, thumb_key: str | None) -> Track:
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

    def _delete_keys(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.store.delete(key)
            except LoistError:
                log.error("could not remove blob %s after a failed ingest; it is now an orphan", key)

    async def _store_and_catalog(
        self, analysis: Analysis, path: Path, source: Source, progress: Progress | None
    ) -> tuple[Track, bool]:
        existing = await self.catalog.get_by_sha256(analysis.sha256)
        if existing is not None:
            await self._clear_failures(source)
            return existing, False
        await _emit(progress, "storing")
        key, thumb, created_keys = await asyncio.to_thread(put_blobs, self.store, analysis, path)
        await _emit(progress, "cataloguing")
        try:
            track, created = await self.catalog.add(self._new_track(analysis, source, key, thumb))
        except BaseException:
            await asyncio.to_thread(self._delete_keys, created_keys)
            raise
        await self._clear_failures(source)
        return track, created

    async def _clear_failures(self, source: Source) -> None:
        if source.location is not None:
            await self.catalog.clear_failures(source.location)

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
        urls: list[str] = []
        files: list[tuple[str, Path, bool]] = []  # (input, path, named by the caller)
        for raw in inputs:
            kind = classify(raw)
            if kind == "url":
                urls.append(raw)
            elif kind == "folder":
                files.extend((str(found), found, False) for found in walk_folder(Path(raw)))
            else:
                files.append((raw, Path(raw), True))
        if on_planned is not None:
            on_planned(len(urls) + len(files))

        async def run_urls() -> None:
            sem = asyncio.Semaphore(max(1, workers * 2))

            async def one(url: str) -> None:
                async with sem:
                    try:
                        track, created = await self._ingest_url(url)
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

    async def _ingest_files_bulk(
        self, files: list[tuple[str, Path, bool]], workers: int
    ) -> AsyncIterator[IngestOutcome]:
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

        async def analyse(chunk: list[tuple[str, Path, bool]]) -> list[tuple[str, Path, Stored | LoistError | None]]:
            nonlocal pool
            job = [(str(path), named) for _, path, named in chunk]
            results: list[Stored | LoistError | None]
            async with in_flight:
                try:
                    if pool is not None:
                        results = await loop.run_in_executor(pool, bulk_worker, self.settings, job)
                    else:
                        results = await asyncio.to_thread(analyse_and_store, self.store, job)
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
                        source = Source(type="file", location=str(path), original_filename=path.name)
                        await self._record_failure(source, result)
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
        created_keys = [k for _, _, stored in batch for k in stored.created]
        tracks = [
            self._new_track(
                stored.analysis,
                Source(type="file", location=str(path), original_filename=path.name),
                stored.blob_key,
                stored.thumbnail_key,
            )
            for _, path, stored in batch
        ]
        try:
            await asyncio.to_thread(self.store.sync)  # before any row references these blobs
            results = await self.catalog.add_many(tracks)
        except LoistError as exc:
            await asyncio.to_thread(self._delete_keys, created_keys)
            return [IngestOutcome(raw, error=exc) for raw, _, _ in batch]
        await self.catalog.clear_failures_many([str(path) for _, path, _ in batch])
        return [
            IngestOutcome(raw, track=track, created=created)
            for (raw, _, _), (track, created) in zip(batch, results, strict=True)
        ]

    # --- read ------------------------------------------------------------------------------------
    async def get(self, track_id: uuid.UUID | str) -> Track:
        tid = parse_track_id(track_id)
        track = await self.catalog.get(tid)
        if track is None:
            raise NotFound(f"no track with id {tid}")
        return track

    async def get_playable(self, track_id: uuid.UUID | str) -> Track:
        """A track that has audio to play (COMPLETED), else NotFound."""
        track = await self.get(track_id)
        if track.status != TrackStatus.COMPLETED or not track.blob_key:
            raise NotFound(f"track {track.id} has no audio (status {track.status})")
        return track

    async def list(
        self, *, cursor: str | None = None, limit: int = 50, status: TrackStatus | None = TrackStatus.COMPLETED
    ) -> TrackPage:
        if not 1 <= limit <= 1000:
            raise InvalidArgument("limit must be between 1 and 1000")
        return await self.catalog.list_tracks(cursor=cursor, limit=limit, status=status)

    async def search(self, request: SearchRequest) -> SearchResult:
        return await self.catalog.search(request)

    # --- write -----------------------------------------------------------------------------------
    async def update_tags(self, track_id: uuid.UUID | str, fields: dict[str, Any]) -> Track:
        """Update tags only. Unknown fields and invalid values are INVALID_ARGUMENT; None clears a tag."""
        unknown = sorted(set(fields) - set(TAG_FIELDS))
        if unknown:
            raise InvalidArgument(f"unknown tag field(s): {', '.join(unknown)}; allowed: {', '.join(TAG_FIELDS)}")
        if not fields:
            raise InvalidArgument("no fields to update")
        try:
            patch = TagsPatch.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise InvalidArgument(f"invalid tag values: {problems}") from None
        track = await self.get(track_id)
        merged = track.tags.model_dump() | patch.model_dump(include=set(fields))
        if merged.get("genres") is None:
            merged["genres"] = []
        tags = Tags.model_validate(merged)
        updated = await self.catalog.update_tags(track.id, tags)
        if updated is None:
            raise NotFound(f"no track with id {track.id}")
        return updated

    async def delete(self, track_id: uuid.UUID | str) -> Track:
        """Remove the row, then its blob and thumbnail unless another row still references them."""
        tid = parse_track_id(track_id)
        track = await self.catalog.delete(tid)
        if track is None:
            raise NotFound(f"no track with id {tid}")
        for key in (track.blob_key, track.thumbnail_key):
            if key and await self.catalog.count_blob_refs(key) == 0:
                await asyncio.to_thread(self.store.delete, key)
        return track

    # --- blobs -----------------------------------------------------------------------------------
    async def stream(self, track_id: uuid.UUID | str) -> BlobInfo:
        track = await self.get_playable(track_id)
        assert track.blob_key is not None
        return await asyncio.to_thread(self.store.stat, track.blob_key)

    async def thumbnail(self, track_id: uuid.UUID | str) -> BlobInfo:
        track = await self.get(track_id)
        if not track.thumbnail_key:
            raise NotFound(f"track {track.id} has no artwork")
        return await asyncio.to_thread(self.store.stat, track.thumbnail_key)

    def iter_blob(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self.store.iter_range(key, start, end)

    def read_blob(self, key: str, start: int, end: int, *, nowait: bool = False) -> bytes | bytearray | None:
        """A small bounded range in one piece; ``nowait``: None unless cached (see ``BlobStore.read_range``)."""
        return self.store.read_range(key, start, end, nowait=nowait)

    def signed_url(self, key: str) -> str | None:
        return self.store.signed_url(key, self.settings.signed_url_ttl_s)

    # --- operations ------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """Database and storage reachability; ``ok`` is False when either is down."""
        checks: dict[str, Any] = {}
        for name, probe in (("database", self.catalog.ping()), ("storage", asyncio.to_thread(self.store.ping))):
            started = time.perf_counter()
            try:
                await probe
                checks[name] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
            except LoistError as exc:
                checks[name] = {"ok": False, "error": exc.to_dict()}
        from loist import __version__

        return {
            "ok": all(c["ok"] for c in checks.values()),
            "version": __version__,
            "environment": self.settings.environment,
            "database": {"dialect": self.catalog.dialect, **checks["database"]},
            "storage": {"backend": self.store.name, **checks["storage"]},
        }

    async def seed_synthetic(
        self, n: int, *, seed: int = 0, batch: int | None = None, progress: Progress | None = None
    ) -> int:
        """Add ``n`` metadata-only tracks sharing one small silent blob (benchmarks, staging).

        The rows go in in short transactions of ``batch`` (default ``synthetic.SEED_BATCH``), so
        another writer of the same SQLite file (a server's tag edit) gets the lock between them;
        ``progress("seeding", done, n)`` is called after each one has committed.
        """
        from loist.library.synthetic import SEED_BATCH, generate_tracks

        if n < 0:
            raise InvalidArgument("n must be >= 0")
        batch = batch or SEED_BATCH
        data = silent_wav(1.0)
        if not await asyncio.to_thread(self.store.exists, SYNTHETIC_BLOB_KEY):
            await asyncio.to_thread(self.store.put_bytes, SYNTHETIC_BLOB_KEY, data, "audio/wav")
        added = done = 0
        chunk: list[Track] = []
        for track in generate_tracks(n, seed=seed, blob_key=SYNTHETIC_BLOB_KEY, blob_size=len(data)):
            chunk.append(track)
            if len(chunk) >= batch or done + len(chunk) == n:
                added += sum(created for _, created in await self.catalog.add_many(chunk))
                done += len(chunk)
                chunk = []
                await _emit(progress, "seeding", done, n)
        return added


async def migrate_database(
    settings: Settings, action: Literal["upgrade", "downgrade", "current"], revision: str = "head"
) -> tuple[str | None, list[str]]:
    """Run ``loist db`` actions; return the database's revision afterwards and the code's heads."""
    from loist.catalog import migrate

    url = settings.sqlalchemy_url()
    if settings.database_dialect == "sqlite":
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if action == "upgrade":
        await migrate.upgrade(url, revision)
    elif action == "downgrade":
        await migrate.downgrade(url, revision)
    return await migrate.current(url), migrate.heads()


def parse_track_id(value: uuid.UUID | str) -> uuid.UUID:
    """A track id from user input; anything that is not a UUID is NOT_FOUND (no such track)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        raise NotFound(f"no track with id {str(value)[:64]!r}") from None


def silent_wav(seconds: float, *, rate: int = 8000) -> bytes:
    """A tiny mono 8-bit WAV of silence (the shared blob of synthetic tracks)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(rate)
        w.writeframes(b"\x80" * int(rate * seconds))
    return buf.getvalue()


