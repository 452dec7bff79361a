"""Bulk-ingest work units: analyse files and write their blobs, in a worker process.

Part of the service layer (it combines the ingest and storage engines), kept apart from
``pipeline.py`` so a process-pool worker imports only what this work needs (no database driver,
no SQLAlchemy): workers start fast and stay small. ``Pipeline.ingest_many`` is the only caller of
the worker; :class:`NewBlobs` (the blobs one unit of work created, released again if it fails) is
shared by every path that writes blobs: single and bulk ingest, and import.

An interrupted or failed bulk run must leave no blob behind, including blobs written by a worker
whose answer never came back. So each run has a :class:`RunDir` that parent and workers share: a
worker names every key in its chunk's journal *before* writing it, and looks for the run's stop
marker between files. The parent releases every journaled key no committed row references, under
the blob locks (``BlobLifetime.release``): a worker never deletes a blob.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loist.config import Settings
from loist.errors import Interrupted, LoistError, StorageFailed
from loist.ingest.analyze import Analysis, analyze_batch
from loist.storage import open_blob_store
from loist.storage.base import BlobStore, audio_key, thumbnail_key

EXISTS_THREADS = 16  # parallel existence checks on a remote store
Source = tuple[Path | bytes, str | None]  # what was written under a key (a file or bytes), and its type

log = logging.getLogger(__name__)

STOPPED = "not ingested: the ingest was interrupted before this file was catalogued"


@dataclass(slots=True)
class Stored:
    """One analysed file whose blobs are written (bulk ingest); ``created`` lists keys this wrote."""

    analysis: Analysis
    blob_key: str
    thumbnail_key: str | None
    created: list[str]


class NewBlobs:
    """Writes blobs for one unit of work (an ingest, a batch of a bulk run, an import batch) and
    remembers which keys it created, so a failure can release exactly those, and what it wrote
    under each key, so it can write it again if the blob is gone when its rows go in.

    Keys are content-addressed: a key that exists already holds these bytes and belongs to the rows
    that reference it, so it is not rewritten and not counted as created. This class never deletes
    a blob: deleting is decided under the blob locks (``loist.library.lifetime``), which a worker
    process cannot take. ``durable=False`` defers the flush to one :meth:`flush` per batch.
    """

    def __init__(
        self,
        store: BlobStore,
        *,
        durable: bool = True,
        created: Iterable[str] = (),
        sources: dict[str, Source] | None = None,
        journal: Path | None = None,
    ) -> None:
        self.store = store
        self.durable = durable
        self.created: list[str] = list(created)
        self.sources: dict[str, Source] = dict(sources or {})
        self.journal = journal  # a bulk chunk's journal: each key is named there before it is written

    @classmethod
    def for_files(cls, store: BlobStore, items: Iterable[tuple[Path, Stored]]) -> NewBlobs:
        """The record of a bulk batch: blobs the workers wrote (not yet flushed) for these files."""
        blobs = cls(store, durable=False)
        for path, stored in items:
            blobs.created.extend(stored.created)
            blobs.sources[stored.blob_key] = (path, stored.analysis.audio.mime_type)
            if stored.thumbnail_key and stored.analysis.thumbnail:
                blobs.sources[stored.thumbnail_key] = (stored.analysis.thumbnail, "image/jpeg")
        return blobs

    @classmethod
    def merged(cls, store: BlobStore, writers: Iterable[NewBlobs]) -> NewBlobs:
        """One record for the blobs of several writers (an import batch)."""
        blobs = cls(store)
        for writer in writers:
            blobs.created.extend(writer.created)
            blobs.sources.update(writer.sources)
        return blobs

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def put_file(self, key: str, path: Path, content_type: str | None) -> bool:
        """Upload ``path`` under ``key`` unless the key exists; True when this call created it."""
        self.sources[key] = (Path(path), content_type)
        if self.store.exists(key):
            return False
        self._announce(key)
        self.store.put_file(key, path, content_type, durable=self.durable)
        self.created.append(key)
        return True

    def put_bytes(self, key: str, data: bytes, content_type: str | None) -> bool:
        """Store ``data`` under ``key`` unless the key exists; True when this call created it."""
        self.sources[key] = (bytes(data), content_type)
        if self.store.exists(key):
            return False
        self._announce(key)
        self.store.put_bytes(key, data, content_type, durable=self.durable)
        self.created.append(key)
        return True

    def _announce(self, key: str) -> None:
        if self.journal is not None:
            note_key(self.journal, key)

    def flush(self) -> None:
        """Make the writes durable before any row references them (a no-op for durable writes).

        Always syncs when writes are deferred, even if this created nothing: a key found existing
        may have been written, unflushed, by another chunk of the same bulk run.
        """
        if not self.durable:
            self.store.sync()

    def ensure(self, keys: Iterable[str]) -> list[str]:
        """Check that every key exists and write again any that does not; return those rewritten.

        Called with the keys' locks held, just before rows that reference them go in: a blob this
        work found or wrote may have been deleted since (its last row was deleted, or another
        failed write released it). StorageFailed when this work has no copy of a missing blob.
        """
        wanted = sorted(set(keys))
        if self.store.name == "local" or len(wanted) < 2:
            present = [self.store.exists(key) for key in wanted]
        else:  # a round trip each: ask in parallel
            with ThreadPoolExecutor(max_workers=min(EXISTS_THREADS, len(wanted))) as pool:
                present = list(pool.map(self.store.exists, wanted))
        rewritten = [key for key, there in zip(wanted, present, strict=True) if not there]
        for key in rewritten:
            self._write_again(key)
            self.created.append(key)
        return rewritten

    def _write_again(self, key: str) -> None:
        source = self.sources.get(key)
        if source is None:
            raise StorageFailed(f"blob {key!r} is missing and this work has no copy of it to write again")
        data, content_type = source
        if isinstance(data, bytes):
            self.store.put_bytes(key, data, content_type)
        elif data.is_file():
            self.store.put_file(key, data, content_type)
        else:
            raise StorageFailed(
                f"blob {key!r} was deleted while this work was writing it and its source {data} is gone: retry"
            )


def put_blobs(blobs: NewBlobs, analysis: Analysis, path: Path) -> tuple[str, str | None]:
    """Store an analysed file's audio (and thumbnail); return their keys. On a failure the caller
    releases ``blobs.created`` (a bulk worker cannot: what it wrote stays for ``loist fsck``)."""
    key = audio_key(analysis.sha256, analysis.extension)
    blobs.put_file(key, path, analysis.audio.mime_type)
    thumb: str | None = None
    if analysis.thumbnail:
        thumb = thumbnail_key(analysis.sha256)
        blobs.put_bytes(thumb, analysis.thumbnail, "image/jpeg")
    return key, thumb


def analyse_and_store(
    store: BlobStore, items: list[tuple[str, bool]], chunk: ChunkFiles | None = None
) -> list[Stored | LoistError | None]:
    """Analyse a chunk of files and write their blobs (not yet flushed). None: skipped, not audio.

    With ``chunk`` (bulk ingest), every key is named in the chunk's journal before it is written,
    and once the run's stop marker exists the files not yet begun come back ``INTERRUPTED``.
    """
    out: list[Stored | LoistError | None] = []
    for item in items:
        if chunk is not None and chunk.stopping():
            out.append(Interrupted(STOPPED))
            continue
        [result] = analyze_batch([item])
        if isinstance(result, Analysis):
            blobs = NewBlobs(store, durable=False, journal=chunk.journal if chunk is not None else None)
            try:
                key, thumb = put_blobs(blobs, result, Path(item[0]))
            except LoistError as exc:
                out.append(exc)
                continue
            out.append(Stored(result, key, thumb, blobs.created))
        else:
            out.append(result)
    return out


_worker_stores: dict[tuple[Any, ...], BlobStore] = {}


def bulk_worker(
    settings: Settings, items: list[tuple[str, bool]], chunk: ChunkFiles | None = None
) -> list[Stored | LoistError | None]:
    """Process-pool entry point: one blob store per worker process, reused across chunks."""
    ident = (settings.storage_backend, str(settings.blob_dir), settings.gcs_bucket_name, settings.gcs_project_id)
    store = _worker_stores.get(ident)
    if store is None:
        store = _worker_stores[ident] = open_blob_store(settings)
    return analyse_and_store(store, items, chunk)


def worker_init() -> None:
    """Process-pool initializer: leave Ctrl-C to the parent, and die with the parent even on ``kill -9``.

    A terminal's Ctrl-C reaches the whole process group. The parent stops the run and collects the
    chunks in flight, so a worker ignores SIGINT and ends its chunk at the next file instead (the
    run's stop marker). On Linux the worker asks the kernel for SIGKILL when its parent dies
    (``PR_SET_PDEATHSIG``). With the ``forkserver`` start method that parent is the fork server,
    which exits when the main process has gone *and* no process holds the write end of its "alive"
    pipe; every worker inherits that end, so the worker closes its copy, after arming the death
    signal so the server cannot go unnoticed in between.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if die_with_parent():
        _release_forkserver()


def die_with_parent() -> bool:
    """Ask Linux for SIGKILL when this process's parent dies (True when armed). Also used by the
    server's worker processes (``loist.web.workers``)."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0:
            return True
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError):
        log.warning("prctl is not available: analysis workers may outlive a killed parent")
    return False


def _release_forkserver() -> None:
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    fd = getattr(server, "_forkserver_alive_fd", None)
    if isinstance(fd, int):
        os.close(fd)
        server._forkserver_alive_fd = None  # type: ignore[union-attr]


# --- what parent and workers of one bulk run share ---------------------------------------------
def note_key(journal: Path, key: str) -> None:
    """Append ``key`` to a chunk's journal (one ``O_APPEND`` write, so lines never interleave)."""
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, f"{key}\n".encode())
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class ChunkFiles:
    """One chunk's journal and the run's stop marker: plain paths, sent to the worker with the chunk."""

    journal: Path
    stop_marker: Path

    def stopping(self) -> bool:
        return self.stop_marker.exists()

    def keys(self) -> list[str]:
        """Every key the chunk's worker named before writing it (some may never have been written)."""
        try:
            return [line for line in self.journal.read_text().splitlines() if line]
        except FileNotFoundError:
            return []


class RunDir:
    """The private temporary directory of one bulk run: chunk journals and the stop marker."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="loist-ingest-"))
        self.stop_marker = self.path / "STOP"

    def chunk(self, number: int) -> ChunkFiles:
        return ChunkFiles(self.path / f"chunk-{number}.keys", self.stop_marker)

    def keys(self) -> list[str]:
        """Every key any worker of the run named in its chunk's journal."""
        return [key for journal in sorted(self.path.glob("chunk-*.keys")) for key in journal.read_text().split()]

    def stop(self) -> None:
        """Ask every worker of the run to end its chunk before its next file."""
        self.stop_marker.touch()

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
