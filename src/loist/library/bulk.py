"""Bulk-ingest work units: analyse files and write their blobs, in a worker process.

Part of the service layer (it combines the ingest and storage engines), kept apart from
``pipeline.py`` so a process-pool worker imports only what this work needs (no database driver,
no SQLAlchemy): workers start fast and stay small. ``Pipeline.ingest_many`` is the only caller of
the worker; :class:`NewBlobs` (the blobs one unit of work created, deleted again if it fails) is
shared by every path that writes blobs: single and bulk ingest, and import.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loist.config import Settings
from loist.errors import LoistError
from loist.ingest.analyze import Analysis, analyze_batch
from loist.storage import open_blob_store
from loist.storage.base import BlobStore, audio_key, thumbnail_key

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Stored:
    """One analysed file whose blobs are written (bulk ingest); ``created`` lists keys this wrote."""

    analysis: Analysis
    blob_key: str
    thumbnail_key: str | None
    created: list[str]


class NewBlobs:
    """Writes blobs for one unit of work (an ingest, a file of a bulk chunk, an import batch) and
    remembers which keys it created, so a failure can delete exactly those.

    Keys are content-addressed: a key that exists already holds these bytes and belongs to the rows
    that reference it, so it is not rewritten, not counted as created, and never deleted here.
    ``durable=False`` defers the flush to one :meth:`flush` (``store.sync()``) per batch.
    """

    def __init__(self, store: BlobStore, *, durable: bool = True, created: Iterable[str] = ()) -> None:
        self.store = store
        self.durable = durable
        self.created: list[str] = list(created)

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def put_file(self, key: str, path: Path, content_type: str | None) -> bool:
        """Upload ``path`` under ``key`` unless the key exists; True when this call created it."""
        if self.store.exists(key):
            return False
        self.store.put_file(key, path, content_type, durable=self.durable)
        self.created.append(key)
        return True

    def put_bytes(self, key: str, data: bytes, content_type: str | None) -> bool:
        """Store ``data`` under ``key`` unless the key exists; True when this call created it."""
        if self.store.exists(key):
            return False
        self.store.put_bytes(key, data, content_type, durable=self.durable)
        self.created.append(key)
        return True

    def flush(self) -> None:
        """Make the writes durable before any row references them (a no-op for durable writes).

        Always syncs when writes are deferred, even if this created nothing: a key found existing
        may have been written, unflushed, by another chunk of the same bulk run.
        """
        if not self.durable:
            self.store.sync()

    def discard(self) -> None:
        """Delete every blob this created (the work failed); one that will not go is logged as an orphan."""
        for key in self.created:
            try:
                self.store.delete(key)
            except LoistError:
                log.error("could not remove blob %s after a failed write; it is now an orphan", key)
        self.created.clear()


def put_blobs(blobs: NewBlobs, analysis: Analysis, path: Path) -> tuple[str, str | None]:
    """Store an analysed file's audio (and thumbnail); return their keys. All or nothing."""
    key = audio_key(analysis.sha256, analysis.extension)
    blobs.put_file(key, path, analysis.audio.mime_type)
    thumb: str | None = None
    if analysis.thumbnail:
        thumb = thumbnail_key(analysis.sha256)
        try:
            blobs.put_bytes(thumb, analysis.thumbnail, "image/jpeg")
        except LoistError:
            blobs.discard()
            raise
    return key, thumb


def analyse_and_store(store: BlobStore, items: list[tuple[str, bool]]) -> list[Stored | LoistError | None]:
    """Analyse a chunk of files and write their blobs (not yet flushed). None: skipped, not audio."""
    out: list[Stored | LoistError | None] = []
    for (raw, _named), result in zip(items, analyze_batch(items), strict=True):
        if isinstance(result, Analysis):
            blobs = NewBlobs(store, durable=False)
            try:
                key, thumb = put_blobs(blobs, result, Path(raw))
            except LoistError as exc:
                out.append(exc)
                continue
            out.append(Stored(result, key, thumb, blobs.created))
        else:
            out.append(result)
    return out


_worker_stores: dict[tuple[Any, ...], BlobStore] = {}


def bulk_worker(settings: Settings, items: list[tuple[str, bool]]) -> list[Stored | LoistError | None]:
    """Process-pool entry point: one blob store per worker process, reused across chunks."""
    ident = (settings.storage_backend, str(settings.blob_dir), settings.gcs_bucket_name, settings.gcs_project_id)
    store = _worker_stores.get(ident)
    if store is None:
        store = _worker_stores[ident] = open_blob_store(settings)
    return analyse_and_store(store, items)

