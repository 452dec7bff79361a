"""``loist fsck``: does the catalog agree with the blob store? With ``repair``, make it agree.

Four passes, each streamed a page at a time (memory is bounded by a page and the report's item
list, not by the size of the library):

1. **Rows**: every COMPLETED row's audio and thumbnail blob exists (``missing_blobs``).
2. **Jobs**: every finished job's derived blob (waveform, rendition) exists (``missing_derived``).
3. **Blobs**: every blob under ``audio/``, ``thumbnails/``, ``waveforms/`` and ``renditions/`` is
   referenced by some row or job (``orphan_blobs``). The synthetic tracks' shared blob is
   referenced by them, so it is an orphan only once no synthetic track is left.
4. **Leftovers**: the store's temp files of interrupted writes and sidecars without their blob
   (local folder only), and this machine's download and import temp folders (``temp_files``,
   ``orphan_sidecars``).

Anything younger than the grace period is left alone and counted in ``skipped_young``: an ingest
may be writing it right now. Repairs (``repair=True``):

* a row whose audio is gone is marked FAILED with ``STORAGE_FAILED`` ("audio blob missing"), so it
  no longer offers a player that cannot play; ingesting the same bytes again makes it COMPLETED
  again under its old id. A row whose thumbnail alone is gone loses its ``thumbnail_key``.
* a finished job whose derived blob is gone is queued again (``JobTable.retry``, as ``loist jobs
  retry`` does): a job worker makes the blob again; meanwhile the track plays its original.
* orphan blobs are released like a deleted track's: with their locks held, and only if still no row
  references them (``BlobLifetime.release``), so fsck never takes a blob an ingest has just claimed.
* leftovers are removed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from loist.catalog.blobs import BlobRefs
from loist.errors import ErrorCode, InvalidArgument, LoistError
from loist.ingest.fetch import DOWNLOAD_TEMP_PREFIX
from loist.library.derived import DERIVED_PREFIXES
from loist.library.transfer import IMPORT_TEMP_PREFIX
from loist.model import TrackStatus
from loist.storage.base import ListedBlob

if TYPE_CHECKING:
    from loist.library.service import Library

T = TypeVar("T")

PAGE = 500
ITEM_LIMIT = 100  # items listed in a report; the counts are always complete
PRESENT_CACHE = 4096  # keys known to exist (the synthetic tracks share one)
PREFIXES = ("audio/", "thumbnails/", *DERIVED_PREFIXES)  # derived blobs are referenced by their jobs
TEMP_PREFIXES = (DOWNLOAD_TEMP_PREFIX, IMPORT_TEMP_PREFIX)
DEFAULT_GRACE = timedelta(minutes=60)
MISSING_AUDIO = "audio blob missing"


@dataclass
class FsckReport:
    repair: bool
    grace: timedelta
    rows_checked: int = 0
    blobs_checked: int = 0
    missing_blobs: int = 0
    missing_derived: int = 0
    orphan_blobs: int = 0
    orphan_sidecars: int = 0
    temp_files: int = 0
    skipped_young: int = 0
    repaired: int = 0
    items: list[dict[str, Any]] = field(default_factory=list)
    items_truncated: bool = False

    def found(self, kind: str, item: dict[str, Any], action: str | None) -> None:
        """Count one problem (``kind`` is a count's name) and whether a repair resolved it."""
        setattr(self, kind, getattr(self, kind) + 1)
        resolved = action is not None and not action.startswith("failed")
        self.repaired += resolved
        if len(self.items) < ITEM_LIMIT:
            self.items.append({"kind": kind.removesuffix("s"), **item, "action": action})
        else:
            self.items_truncated = True

    @property
    def problems(self) -> int:
        return self.missing_blobs + self.missing_derived + self.orphan_blobs + self.orphan_sidecars + self.temp_files

    @property
    def remaining(self) -> int:
        """Problems found and not repaired (0: the library is consistent now)."""
        return self.problems - self.repaired

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.remaining == 0,
            "repair": self.repair,
            "grace_minutes": self.grace.total_seconds() / 60,
            "rows_checked": self.rows_checked,
            "blobs_checked": self.blobs_checked,
            "missing_blobs": self.missing_blobs,
            "missing_derived": self.missing_derived,
            "orphan_blobs": self.orphan_blobs,
            "orphan_sidecars": self.orphan_sidecars,
            "temp_files": self.temp_files,
            "skipped_young": self.skipped_young,
            "repaired": self.repaired,
            "remaining": self.remaining,
            "items": self.items,
            "items_truncated": self.items_truncated,
        }


async def fsck(library: Library, *, repair: bool = False, grace: timedelta = DEFAULT_GRACE) -> FsckReport:
    """Compare the catalog with the blob store; with ``repair``, fix what differs (``loist fsck``).

    Blobs and temp files younger than ``grace`` (default an hour) are left alone: an ingest may be
    writing them.
    """
    if grace < timedelta(0):
        raise InvalidArgument("the grace period cannot be negative")
    report = FsckReport(repair=repair, grace=grace)
    cutoff = datetime.now(UTC) - grace
    await _check_rows(library, report)
    await _check_jobs(library, report)
    await _check_blobs(library, report, cutoff)
    await _check_leftovers(library, report, cutoff)
    return report


# --- 1. rows whose blobs are missing ----------------------------------------------------------


async def _check_rows(library: Library, report: FsckReport) -> None:
    present: dict[str, bool] = {}
    after: uuid.UUID | None = None
    while page := await library.catalog.completed_refs(after=after, limit=PAGE):
        after = page[-1].id
        if len(present) > PRESENT_CACHE:
            present.clear()
        unknown = sorted({key for row in page for key in (row.blob_key, row.thumbnail_key) if key} - present.keys())
        present.update(await library.storage_pool.run(_exist, library, unknown))
        for row in page:
            report.rows_checked += 1
            missing = [
                (blob, key)
                for blob, key in (("audio", row.blob_key), ("thumbnail", row.thumbnail_key))
                if (blob == "audio" and not key) or (key and not present[key])
            ]
            if not missing:
                continue
            action = await _repair_row(library, row) if report.repair else None
            for blob, key in missing:
                report.found("missing_blobs", {"track_id": str(row.id), "blob": blob, "key": key}, action)


def _exist(library: Library, keys: list[str]) -> dict[str, bool]:
    if library.store.name == "local" or len(keys) < 2:
        return {key: library.store.exists(key) for key in keys}
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(16, len(keys))) as pool:
        return dict(zip(keys, pool.map(library.store.exists, keys), strict=True))


async def _repair_row(library: Library, row: BlobRefs) -> str:
    """Mark the row FAILED (audio gone) or drop its thumbnail, deciding with its blobs locked."""
    keys = [key for key in (row.blob_key, row.thumbnail_key) if key]
    try:
        async with library.catalog.locked(keys):
            now = await library.catalog.get(row.id)
            if now is None or now.status != TrackStatus.COMPLETED or (now.blob_key, now.thumbnail_key) != (row.blob_key, row.thumbnail_key):
                return "changed meanwhile"
            there = await library.storage_pool.run(_exist, library, keys)
            if not row.blob_key or not there[row.blob_key]:
                message = f"{MISSING_AUDIO} ({row.blob_key}): ingest the same file again to restore this track"
                if await library.catalog.mark_broken(row.id, ErrorCode.STORAGE_FAILED.value, message):
                    return "marked_failed"
                return "failed: another broken track holds this source's FAILED record"
            if row.thumbnail_key and not there[row.thumbnail_key]:
                await library.catalog.drop_thumbnail(row.id)
                return "thumbnail_dropped"
            return "blobs back meanwhile"
    except LoistError as exc:
        return f"failed: {exc.code}: {exc.message}"


# --- 2. finished jobs whose derived blobs are missing --------------------------------------------


async def _check_jobs(library: Library, report: FsckReport) -> None:
    after = 0
    while page := await library.catalog.jobs.done_results(after, PAGE):
        after = page[-1][0]
        present = await library.storage_pool.run(_exist, library, sorted({key for *_, key in page}))
        for job_id, track_id, kind, key in page:
            if present[key]:
                continue
            action = await _requeue(library, job_id, track_id, kind, key) if report.repair else None
            item = {"track_id": str(track_id), "blob": kind, "key": key, "job_id": job_id}
            report.found("missing_derived", item, action)


async def _requeue(library: Library, job_id: int, track_id: uuid.UUID, kind: str, key: str) -> str:
    """Queue the job that makes ``key`` again, deciding with the key locked (a worker records a
    finished job under the same lock)."""
    try:
        async with library.catalog.locked([key]):
            done = await library.catalog.jobs.done_key(track_id, kind)
            if done is None or done[0] != key or await library.storage_pool.run(library.store.exists, key):
                return "changed meanwhile"
            queued = await library.catalog.jobs.retry(datetime.now(UTC), ids=[job_id])
            return "requeued" if queued else "changed meanwhile"
    except LoistError as exc:
        return f"failed: {exc.code}: {exc.message}"


# --- 3. blobs no row references ---------------------------------------------------------------


async def _check_blobs(library: Library, report: FsckReport, cutoff: datetime) -> None:
    for prefix in PREFIXES:
        async for page in _pages(library.store.list_keys(prefix)):
            report.blobs_checked += len(page)
            referenced = await library.catalog.referenced_keys([blob.key for blob in page])
            old: list[ListedBlob] = []
            for blob in page:
                if blob.key in referenced:
                    continue
                if blob.updated > cutoff:
                    report.skipped_young += 1
                else:
                    old.append(blob)
            actions = await _release(library, old) if report.repair and old else {}
            for blob in old:
                item = {"key": blob.key, "size": blob.size, "updated": blob.updated.isoformat()}
                report.found("orphan_blobs", item, actions.get(blob.key))


async def _release(library: Library, blobs: list[ListedBlob]) -> dict[str, str]:
    try:
        removed = set(await library.pipeline.lifetime.release([blob.key for blob in blobs]))
    except LoistError as exc:
        return {blob.key: f"failed: {exc.code}: {exc.message}" for blob in blobs}
    return {blob.key: "removed" if blob.key in removed else "referenced meanwhile" for blob in blobs}


# --- 4. temp files and sidecars ---------------------------------------------------------------


async def _check_leftovers(library: Library, report: FsckReport, cutoff: datetime) -> None:
    async for page in _pages(library.store.leftovers()):
        for leftover in page:
            if leftover.updated > cutoff:
                report.skipped_young += 1
                continue
            action = None
            if report.repair:
                try:
                    await library.storage_pool.run(library.store.remove_leftover, leftover)
                    action = "removed"
                except LoistError as exc:
                    action = f"failed: {exc.code}: {exc.message}"
            kind = "temp_files" if leftover.kind == "temp" else "orphan_sidecars"
            report.found(kind, {"path": leftover.name, "size": leftover.size}, action)
    for folder, young in await asyncio.to_thread(_temp_folders, cutoff):
        if young:
            report.skipped_young += 1
            continue
        action = None
        if report.repair:
            await asyncio.to_thread(shutil.rmtree, folder, True)
            action = "removed" if not folder.exists() else "failed: could not remove it"
        report.found("temp_files", {"path": str(folder)}, action)


def _temp_folders(cutoff: datetime) -> list[tuple[Path, bool]]:
    """This user's download and import temp folders on this machine, each with "younger than cutoff"."""
    root = Path(tempfile.gettempdir())
    found: list[tuple[Path, bool]] = []
    try:
        entries = [entry for entry in os.scandir(root) if entry.name.startswith(TEMP_PREFIXES)]
    except OSError:
        return found
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat().st_uid != os.getuid():
                continue
            newest = max([entry.stat().st_mtime, *(p.stat().st_mtime for p in Path(entry.path).rglob("*"))])
        except OSError:
            continue  # gone meanwhile (the ingest finished)
        found.append((Path(entry.path), datetime.fromtimestamp(newest, tz=UTC) > cutoff))
    return found


async def _pages(items: Iterator[T], size: int = PAGE) -> AsyncIterator[list[T]]:
    """A blocking iterator (a listing) read a page at a time in a worker thread."""
    while page := await asyncio.to_thread(lambda: list(itertools.islice(items, size))):
        yield page
