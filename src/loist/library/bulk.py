"""Bulk-ingest work units: analyse files and write their blobs, in a worker process.

Part of the service layer (it combines the ingest and storage engines), kept apart from
``pipeline.py`` so a process-pool worker imports only what this work needs (no database driver,
no SQLAlchemy): workers start fast and stay small. ``Pipeline.ingest_many`` is the only caller of
the worker; :class:`NewBlobs` (the blobs one unit of work created, deleted again if it fails) is
shared by every path that writes blobs: single and bulk ingest, and import.

An interrupted or failed bulk run must leave no blob behind, including blobs written by a worker
whose answer never came back. So each run has a :class:`RunDir` that parent and workers share: a
worker names every key in its chunk's journal *before* writing it, and looks for the run's stop
marker between files. :class:`RunBlobs` is the parent's side: it deletes what was not committed,
never a blob a committed row of the run references.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loist.config import Settings
from loist.errors import Interrupted, LoistError
from loist.ingest.analyze import Analysis, analyze_batch
from loist.storage import open_blob_store
from loist.storage.base import BlobStore, audio_key, thumbnail_key

if TYPE_CHECKING:
    from loist.model import Track

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
    """Writes blobs for one unit of work (an ingest, a file of a bulk chunk, an import batch) and
    remembers which keys it created, so a failure can delete exactly those.

    Keys are content-addressed: a key that exists already holds these bytes and belongs to the rows
    that reference it, so it is not rewritten, not counted as created, and never deleted here.
    ``durable=False`` defers the flush to one :meth:`flush` (``store.sync()``) per batch.
    """

    def __init__(
        self, store: BlobStore, *, durable: bool = True, created: Iterable[str] = (), journal: Path | None = None
    ) -> None:
        self.store = store
        self.durable = durable
        self.created: list[str] = list(created)
        self.journal = journal  # a bulk chunk's journal: each key is named there before it is written

    def exists(self, key: str) -> bool:
        return self.store.exists(key)

    def put_file(self, key: str, path: Path, content_type: str | None) -> bool:
        """Upload ``path`` under ``key`` unless the key exists; True when this call created it."""
        if self.store.exists(key):
            return False
        self._announce(key)
        self.store.put_file(key, path, content_type, durable=self.durable)
        self.created.append(key)
        return True

    def put_bytes(self, key: str, data: bytes, content_type: str | None) -> bool:
        """Store ``data`` under ``key`` unless the key exists; True when this call created it."""
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
    if _die_with_parent():
        _release_forkserver()


def _die_with_parent() -> bool:
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


class RunBlobs:
    """The blobs of one bulk run, from the parent: delete what was not committed, never what was.

    Two files with the same bytes share content-addressed keys, and whichever chunk wrote a key
    first (or both, when they raced) recorded it as created. So every key a row committed by this
    run references is *kept*: dropping a chunk that wrote it must not take the blob from under that
    row. Kept keys are remembered by their hash (about 60 bytes each; a false match keeps a blob,
    it never deletes one). A key deleted here is remembered as *gone*, so a later batch whose rows
    need it writes it again first.
    """

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.kept: set[int] = set()
        self.gone: set[str] = set()

    def keep(self, committed: Iterable[Track]) -> None:
        """The rows ``committed`` (new or found by their sha256) reference their blobs: never delete those."""
        for track in committed:
            self.kept.update(hash(k) for k in (track.blob_key, track.thumbnail_key) if k)

    def claim(self, keys: Iterable[str]) -> list[str]:
        """The ``keys`` that work which failed or stopped may delete (not those committed rows reference)."""
        return [k for k in keys if hash(k) not in self.kept]

    def discard(self, keys: Iterable[str]) -> None:
        """Delete the uncommitted blobs among ``keys`` (blocking: call it in a thread)."""
        mine = self.claim(keys)
        NewBlobs(self.store, created=mine).discard()
        self.gone.update(mine)

    def restore(self, batch: Iterable[tuple[Path, Stored]]) -> list[str]:
        """Write again the blobs of ``batch`` this run deleted; the keys written. All or nothing (blocking)."""
        needed = [(path, stored) for path, stored in batch if self.gone.intersection(_keys(stored))]
        blobs = NewBlobs(self.store, durable=False)
        for path, stored in needed:
            put_blobs(blobs, stored.analysis, path)  # on failure it deletes every blob it wrote, then raises
        for _, stored in needed:
            self.gone.difference_update(_keys(stored))
        return blobs.created


def _keys(stored: Stored) -> tuple[str, ...]:
    return (stored.blob_key, stored.thumbnail_key) if stored.thumbnail_key else (stored.blob_key,)
