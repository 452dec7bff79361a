"""Blob lifetime: when a blob may be claimed by a row, and when it may be deleted.

Blobs are content-addressed and shared: ingests of the same bytes, and synthetic tracks, point at
one key. Without care a delete and an ingest of the same bytes interleave badly: the delete counts
no reference and deletes the blob while an ingest, having found the blob there, inserts its row.
The rules, each decided under the locks of the keys involved (``Catalog.locked``: PostgreSQL
advisory locks per key, SQLite's single writer) and in the same transaction as the rows:

* **claim** (:meth:`BlobLifetime.claim`, every row insert): with the keys locked, check that every
  blob the rows reference exists, write again any that does not (from the file or bytes this work
  wrote), then insert the rows; a row already there for the same bytes whose blobs are missing, or
  that ``loist fsck`` marked FAILED, is made COMPLETED again with these blobs (dedupe repairs).
* **release** (:meth:`BlobLifetime.release`, deletes, failed writes, fsck): with the keys locked,
  delete a blob only if no row references it. The lock is held until the blob is gone.
* **delete a track** (:meth:`BlobLifetime.delete_track`): the row goes in one locked transaction,
  which commits; then its blobs are released. A blob is never deleted inside the transaction that
  deletes its row, so a failed commit cannot leave a row without its blob.

So whatever the order: a claim that comes after a release finds the blob gone and writes it again;
a release that comes after a claim sees the reference and keeps the blob. A COMPLETED row always
has its blobs. A failure leaves at worst an unreferenced blob (an orphan), which ``loist fsck``
finds and removes, never a row without its blob.

:class:`Checkpoints` names the points where the order matters. The library reaches them and does
nothing; a test replaces the object with one that pauses or fails a task at a point, to force one
interleaving deterministically (tests/library/test_blob_lifetime.py).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence

from loist.catalog import Catalog
from loist.errors import LoistError
from loist.library.bulk import NewBlobs
from loist.library.storage_pool import StoragePool
from loist.model import Track, TrackStatus
from loist.storage.base import BlobStore

log = logging.getLogger(__name__)

RELEASE_CHUNK = 500  # keys locked and released at a time


class Checkpoints:
    """Named points of ingest and delete: ``looked_up``, ``stored``, ``flushing`` (a claim, before
    its blobs are flushed), ``claiming``, ``committed`` (ingest); ``row_deleted``, ``refs_counted``, ``blobs_deleted`` (delete, release); ``lock_blocked``
    (any, when a blob lock is taken and it waits). The default does nothing."""

    async def reached(self, point: str) -> None:
        return None


def blob_keys(tracks: Iterable[Track]) -> list[str]:
    """Every blob key the tracks reference, once each, sorted."""
    return sorted({key for track in tracks for key in (track.blob_key, track.thumbnail_key) if key})


class BlobLifetime:
    """Claims and releases blobs of one catalog and store (owned by the pipeline)."""

    def __init__(self, catalog: Catalog, store: BlobStore, storage_pool: StoragePool) -> None:
        self.catalog = catalog
        self.store = store
        self.storage_pool = storage_pool  # every blocking store call (loist.library.storage_pool)
        self.checkpoints = Checkpoints()
        # The jobs each new row gets, queued in the transaction that inserts it (loist.library.derived).
        self.derive: Callable[[Track], Sequence[str]] | None = None

    async def _blocked(self) -> None:
        await self.checkpoints.reached("lock_blocked")

    # --- rows meet their blobs -------------------------------------------------------------------
    async def claim(self, tracks: Sequence[Track], blobs: NewBlobs) -> list[tuple[Track, bool]]:
        """Flush ``blobs``, then with their keys locked verify them and insert ``tracks`` in one
        transaction (each deduplicated by sha256); ``(track, created)`` for each.

        On any failure the blobs ``blobs`` created are released and the error is raised.
        """
        keys = blob_keys(tracks)
        try:
            await self.checkpoints.reached("flushing")
            await self.storage_pool.run(blobs.flush)  # before any row references these blobs
            async with self.catalog.locked(keys, on_blocked=self._blocked):
                await self.checkpoints.reached("claiming")
                await self.storage_pool.run(blobs.ensure, keys)
                results = await self.catalog.add_many(tracks, derive=self.derive)
                results = [await self._heal(pair, ours, set(keys)) for pair, ours in zip(results, tracks, strict=True)]
        except BaseException:
            await self.discard(blobs)
            raise
        unclaimed = set(blobs.created) - set(blob_keys(track for track, _ in results))
        if unclaimed:  # written for a row that turned out to exist with other blobs
            await self.release(sorted(unclaimed))
        return results

    async def _heal(self, pair: tuple[Track, bool], ours: Track, verified: set[str]) -> tuple[Track, bool]:
        """A row already there for these bytes stays as it is if it is whole; else it gets our blobs."""
        existing, created = pair
        if created:
            return pair
        keys = [key for key in (existing.blob_key, existing.thumbnail_key) if key]
        whole = existing.status == TrackStatus.COMPLETED and existing.blob_key is not None
        whole = whole and not (ours.thumbnail_key and not existing.thumbnail_key)
        if whole and not set(keys) <= verified:
            whole = all(await self.storage_pool.run(lambda: [self.store.exists(key) for key in keys]))
        if whole or ours.blob_key is None:
            return pair
        restored = await self.catalog.restore(existing.id, ours.blob_key, ours.thumbnail_key)
        log.warning("track %s had lost its blobs (or was marked broken): restored from a new ingest", existing.id)
        return (restored or existing), False

    async def confirm(self, existing: Track, *, thumbnail: bool = False) -> Track | None:
        """``existing`` as it is now, if it is still COMPLETED with every blob (and a thumbnail,
        when the ingest has one to give it); else None.

        The blobs are checked first and the row read last: a blob is only deleted once no row
        references it, so a row still there afterwards still has them.
        """
        keys = [key for key in (existing.blob_key, existing.thumbnail_key) if key]
        if existing.status != TrackStatus.COMPLETED or not existing.blob_key:
            return None
        if thumbnail and not existing.thumbnail_key:
            return None
        if not all(await self.storage_pool.run(lambda: [self.store.exists(key) for key in keys])):
            return None
        current = await self.catalog.get(existing.id)
        if current is None or current.status != TrackStatus.COMPLETED:
            return None
        if {key for key in (current.blob_key, current.thumbnail_key) if key} - set(keys):
            return None
        return current

    # --- blobs go --------------------------------------------------------------------------------
    async def release(self, keys: Iterable[str]) -> list[str]:
        """Delete each blob no row references, deciding and deleting with its lock held; the keys
        deleted."""
        wanted = sorted({key for key in keys if key})
        deleted: list[str] = []
        for start in range(0, len(wanted), RELEASE_CHUNK):
            chunk = wanted[start : start + RELEASE_CHUNK]
            async with self.catalog.locked(chunk, on_blocked=self._blocked):
                referenced = await self.catalog.referenced_keys(chunk)
                unreferenced = [key for key in chunk if key not in referenced]
                if unreferenced:
                    await self.checkpoints.reached("refs_counted")
                for key in unreferenced:
                    await self.storage_pool.run(self.store.delete, key)
                    deleted.append(key)
                await self.checkpoints.reached("blobs_deleted")
        return deleted

    async def discard(self, blobs: NewBlobs) -> None:
        """Release what a failed unit of work created. If that fails too (the database is what
        failed), the blobs stay as orphans for ``loist fsck``: deleting without the locks could
        take a blob from a row another ingest has just written."""
        keys, blobs.created = list(blobs.created), []
        if not keys:
            return
        try:
            await self.release(keys)
        except LoistError as exc:
            log.error("could not remove %d blob(s) after a failed write (%s); `loist fsck --repair` "
                      "removes them: %s", len(keys), exc.code, ", ".join(keys))

    async def delete_track(self, track_id: uuid.UUID) -> Track | None:
        """Delete a row and its jobs (its keys locked), then release its blobs and the derived blobs
        its jobs made; the row, or None if it was gone."""
        track = await self.catalog.get(track_id)
        if track is None:
            return None
        async with self.catalog.locked(blob_keys([track]), on_blocked=self._blocked):
            derived = await self.catalog.jobs.delete_for_track(track_id)
            gone = await self.catalog.delete(track_id)
        if gone is None:
            return None
        await self.checkpoints.reached("row_deleted")
        await self.release([*blob_keys([gone]), *derived])
        return gone
