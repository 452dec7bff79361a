"""Bulk-ingest work units: analyse files and write their blobs, in a worker process.

Part of the service layer (it combines the ingest and storage engines), kept apart from
``library.py`` so a process-pool worker imports only what this work needs (no database driver,
no SQLAlchemy): workers start fast and stay small. ``Library.ingest_many`` is the only caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loist.config import Settings
from loist.errors import LoistError
from loist.ingest.analyze import Analysis, analyze_batch
from loist.storage import open_blob_store
from loist.storage.base import BlobStore, audio_key, thumbnail_key


@dataclass(slots=True)
class Stored:
    """One analysed file whose blobs are written (bulk ingest); ``created`` lists keys this wrote."""

    analysis: Analysis
    blob_key: str
    thumbnail_key: str | None
    created: list[str]


def put_blobs(store: BlobStore, analysis: Analysis, path: Path, *, durable: bool = True) -> tuple[str, str | None, list[str]]:
    """Store audio (and thumbnail); return their keys and the keys this call newly created.

    Keys are content-addressed, so an existing key already holds these bytes and is not rewritten
    (and, not being ours, is never deleted when this ingest fails later).
    """
    key = audio_key(analysis.sha256, analysis.extension)
    created: list[str] = []
    if not store.exists(key):
        store.put_file(key, path, analysis.audio.mime_type, durable=durable)
        created.append(key)
    thumb: str | None = None
    if analysis.thumbnail:
        thumb = thumbnail_key(analysis.sha256)
        try:
            if not store.exists(thumb):
                store.put_bytes(thumb, analysis.thumbnail, "image/jpeg", durable=durable)
                created.append(thumb)
        except LoistError:
            for k in created:
                store.delete(k)
            raise
    return key, thumb, created


def analyse_and_store(store: BlobStore, items: list[tuple[str, bool]]) -> list[Stored | LoistError | None]:
    """Analyse a chunk of files and write their blobs (not yet flushed). None: skipped, not audio."""
    out: list[Stored | LoistError | None] = []
    for (raw, _named), result in zip(items, analyze_batch(items), strict=True):
        if isinstance(result, Analysis):
            try:
                key, thumb, created = put_blobs(store, result, Path(raw), durable=False)
            except LoistError as exc:
                out.append(exc)
                continue
            out.append(Stored(result, key, thumb, created))
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

