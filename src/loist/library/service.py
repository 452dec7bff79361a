"""The library service: the one facade every entry point (MCP, web, CLI) calls.

It orchestrates the engines, which never call each other. Ingest (fetch -> sniff/analyse -> store
blob -> write row, and its consistency rules) is :mod:`loist.library.pipeline`, which the facade
owns and delegates to; reading, editing, deleting, wiping, streaming and the import of tracks
brought from elsewhere live here. Rules the facade keeps:

* a blob is deleted only when no row references it any more, decided with its lock held
  (:mod:`loist.library.lifetime`);
* an import batch's rows go in through the pipeline's one commit, so a failed batch leaves no blob
  it created behind, exactly like a failed ingest.
"""

from __future__ import annotations

import asyncio
import functools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from loist.catalog import Catalog
from loist.config import Settings
from loist.errors import DatabaseFailed, InvalidArgument, LoistError, NotFound, StorageFailed
from loist.library import datadir
from loist.library.storage_pool import StoragePool
from loist.model import (
    NAME_LISTS,
    TAG_FIELDS,
    SearchRequest,
    SearchResult,
    Tags,
    TagsPatch,
    Track,
    TrackPage,
    TrackStatus,
    parse_track_id,
)
from loist.storage import open_blob_store
from loist.storage.base import BlobInfo, BlobStore

if TYPE_CHECKING:  # imported when first used: reading the library (`loist list`) never loads the ingest engines
    from loist.library.bulk import NewBlobs
    from loist.library.pipeline import BulkControl, IngestOutcome, Pipeline, Progress

PAGE = 500  # rows per page when walking the whole library (export, wipe)


class Library:
    """One open library: a catalog, a blob store and the settings they were built from.

    Every blocking call on ``store`` runs through ``storage_pool`` (``await
    library.storage_pool.run(fn, ...)``), entry points included: see :mod:`loist.library.storage_pool`.
    """

    def __init__(self, settings: Settings, catalog: Catalog, store: BlobStore) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.storage_pool = StoragePool(settings.storage_threads)

    @functools.cached_property
    def pipeline(self) -> Pipeline:
        """The ingest pipeline, built on first use (with the ingest engines it imports)."""
        from loist.library.pipeline import Pipeline

        return Pipeline(self.settings, self.catalog, self.store, self.storage_pool)

    # --- lifecycle -------------------------------------------------------------------------------
    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool | None = None) -> Library:
        """Open the catalog and the blob store.

        The embedded default (SQLite) migrates itself so a new user needs no set-up. Server
        databases are migrated by ``loist db upgrade`` (a deploy step); opening one whose schema
        is behind is refused with a clear error instead of running migrations from every instance.
        """
        datadir.prepare(settings)
        catalog = Catalog.from_url(
            settings.sqlalchemy_url(), pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow,
            write_timeout_s=settings.sqlite_write_timeout_s,
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
        if "pipeline" in self.__dict__:  # built: its process pool, if any, ends here
            self.pipeline.close()
        self.storage_pool.close()
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

    # --- ingest (the pipeline) -------------------------------------------------------------------
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
        track, _ = await self.pipeline.ingest_url(
            url, headers=headers, filename=filename, max_size_mb=max_size_mb, progress=progress
        )
        return track

    async def ingest_file(self, path: str | Path, *, progress: Progress | None = None) -> Track:
        """Analyse, store and catalogue one local file."""
        track, _ = await self.pipeline.ingest_file(Path(path), progress=progress)
        return track

    def ingest_many(
        self,
        inputs: Iterable[str],
        *,
        concurrency: int | None = None,
        on_planned: Callable[[int], None] | None = None,
        control: BulkControl | None = None,
    ) -> AsyncIterator[IngestOutcome]:
        """Ingest URLs, files and folders; one outcome per item as it finishes (see ``Pipeline.ingest_many``;
        ``control`` stops the run early, see ``BulkControl``)."""
        return self.pipeline.ingest_many(inputs, concurrency=concurrency, on_planned=on_planned, control=control)

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

    async def iter_tracks(self, *, status: TrackStatus | None = TrackStatus.COMPLETED) -> AsyncIterator[Track]:
        """Every track with ``status`` (None: any), newest first, read a page at a time (export, wipe)."""
        cursor: str | None = None
        while True:
            page = await self.list(cursor=cursor, limit=PAGE, status=status)
            for track in page.items:
                yield track
            if not page.next_cursor:
                return
            cursor = page.next_cursor

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
        # The patch's own fields: a name list and its display string change together (loist.model).
        merged = track.tags.model_dump() | patch.model_dump(include=patch.model_fields_set)
        for many in ("genres", *NAME_LISTS):
            if merged.get(many) is None:
                merged[many] = []
        tags = Tags.model_validate(merged)
        updated = await self.catalog.update_tags(track.id, tags)
        if updated is None:
            raise NotFound(f"no track with id {track.id}")
        return updated

    async def delete(self, track_id: uuid.UUID | str) -> Track:
        """Remove the row, then its blob and thumbnail unless another row still references them
        (decided with the blobs' locks held: see ``loist.library.lifetime``)."""
        tid = parse_track_id(track_id)
        track = await self.pipeline.lifetime.delete_track(tid)
        if track is None:
            raise NotFound(f"no track with id {tid}")
        return track

    async def wipe(self, *, delete_blobs: bool = True) -> int:
        """Delete every track (and, by default, the blobs they reference); return how many. Refused in production."""
        if self.settings.environment == "production":
            raise InvalidArgument("refusing to wipe a production library (ENVIRONMENT=production)")
        keys: set[str] = set()
        count = 0
        async for track in self.iter_tracks(status=None):
            count += 1
            keys.update(k for k in (track.blob_key, track.thumbnail_key) if k)
        await self.catalog.wipe()
        if delete_blobs:  # released like a delete's: an ingest running meanwhile keeps what it claims
            await self.pipeline.lifetime.release(keys)
        return count

    # --- tracks from another library (loist import) ----------------------------------------------
    def blob_writer(self) -> NewBlobs:
        """Writes into this library's blob store and remembers the blobs it created (one per imported track)."""
        from loist.library.bulk import NewBlobs

        return NewBlobs(self.store)

    async def import_tracks(self, items: Sequence[tuple[Track, NewBlobs]]) -> list[tuple[Track, bool]]:
        """Catalogue tracks brought from elsewhere, each with the writer that put its blobs here.

        One transaction, each track deduplicated by sha256 like an ingest; ``(track, created)`` per
        item. If it fails, every blob these writers created is deleted again and the error raised.
        """
        from loist.library.bulk import NewBlobs

        blobs = NewBlobs.merged(self.store, [writer for _, writer in items])
        return await self.pipeline.commit([track for track, _ in items], blobs)

    async def discard(self, blobs: NewBlobs) -> None:
        """Release the blobs a writer from :meth:`blob_writer` created, for work that failed."""
        await self.pipeline.discard(blobs)

    async def ensure_synthetic_blob(self, blobs: NewBlobs | None = None) -> int:
        """Put the small silent blob every synthetic track shares, unless it is there; return its size.

        Through ``blobs`` when given, so a failed import batch deletes it again if that batch wrote it.
        """
        from loist.library.synthetic import SYNTHETIC_BLOB_KEY, synthetic_blob

        data = synthetic_blob()
        await self.storage_pool.run((blobs or self.blob_writer()).put_bytes, SYNTHETIC_BLOB_KEY, data, "audio/wav")
        return len(data)

    # --- blobs -----------------------------------------------------------------------------------
    async def stream(self, track_id: uuid.UUID | str) -> BlobInfo:
        track = await self.get_playable(track_id)
        assert track.blob_key is not None
        return await self.storage_pool.run(self.store.stat, track.blob_key)

    async def thumbnail(self, track_id: uuid.UUID | str) -> BlobInfo:
        track = await self.get(track_id)
        if not track.thumbnail_key:
            raise NotFound(f"track {track.id} has no artwork")
        return await self.storage_pool.run(self.store.stat, track.thumbnail_key)

    def iter_blob(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Blocking (opening and each step): call it, and step it, through ``storage_pool.run``."""
        return self.store.iter_range(key, start, end)

    def read_blob(self, key: str, start: int, end: int, *, nowait: bool = False) -> bytes | bytearray | None:
        """A small bounded range in one piece; ``nowait``: None unless cached (see ``BlobStore.read_range``).

        Blocking unless ``nowait``: call it through ``storage_pool.run``.
        """
        return self.store.read_range(key, start, end, nowait=nowait)

    def signed_url(self, key: str) -> str | None:
        """Blocking on GCS (IAM signing): call it through ``storage_pool.run``."""
        return self.store.signed_url(key, self.settings.signed_url_ttl_s)

    # --- operations ------------------------------------------------------------------------------
    async def health(self) -> dict[str, Any]:
        """Database and storage reachability; ``ok`` is False when either is down.

        Answers within ``HEALTH_TIMEOUT_S`` whatever the dependencies do: both probes run at once,
        each with that hard timeout, and the storage probe runs in a thread of its own (never
        behind stream reads waiting for the storage pool). A probe that does not answer in time
        reports its dependency as failing (``DATABASE_FAILED`` / ``STORAGE_FAILED``).
        """
        budget = self.settings.health_timeout_s

        async def database() -> None:
            try:
                await asyncio.wait_for(self.catalog.ping(), budget)
            except TimeoutError:
                raise DatabaseFailed(f"the database did not answer within {budget:g} s") from None

        async def storage() -> None:
            try:
                await self.storage_pool.probe(self.store.ping, budget)
            except TimeoutError:
                raise StorageFailed(f"the {self.store.name} storage did not answer within {budget:g} s") from None

        db, st = await asyncio.gather(_timed(database()), _timed(storage()))
        checks = {"database": db, "storage": st}
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
        from loist.library.pipeline import _emit
        from loist.library.synthetic import SEED_BATCH, SYNTHETIC_BLOB_KEY, generate_tracks

        if n < 0:
            raise InvalidArgument("n must be >= 0")
        batch = batch or SEED_BATCH
        blobs = self.blob_writer()
        size = await self.ensure_synthetic_blob(blobs)
        added = done = 0
        chunk: list[Track] = []
        for track in generate_tracks(n, seed=seed, blob_key=SYNTHETIC_BLOB_KEY, blob_size=size):
            chunk.append(track)
            if len(chunk) >= batch or done + len(chunk) == n:
                added += sum(created for _, created in await self.pipeline.commit(chunk, blobs))
                done += len(chunk)
                chunk = []
                await _emit(progress, "seeding", done, n)
        return added


async def _timed(probe: Awaitable[None]) -> dict[str, Any]:
    started = time.perf_counter()
    result: dict[str, Any] = {"ok": True}
    try:
        await probe
    except LoistError as exc:
        result = {"ok": False, "error": exc.to_dict()}
    return {**result, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def migrate_database(
    settings: Settings, action: Literal["upgrade", "downgrade", "current"], revision: str = "head"
) -> tuple[str | None, list[str]]:
    """Run ``loist db`` actions; return the database's revision afterwards and the code's heads."""
    from loist.catalog import migrate

    url = settings.sqlalchemy_url()
    datadir.prepare(settings, blobs=False)
    if action == "upgrade":
        await migrate.upgrade(url, revision)
    elif action == "downgrade":
        await migrate.downgrade(url, revision)
    return await migrate.current(url), migrate.heads()

