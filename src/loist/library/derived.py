"""Derived work per track: what to make (:func:`derive_kinds`), how (:class:`Derived`), where it is kept.

Two kinds, each one job per track (``loist.catalog.jobs``), each making one content-addressed blob
named by the audio's sha256 (like thumbnails), so running a job twice writes the same key:

* ``waveform``: min/max peaks in waveform-data v2 JSON, ``waveforms/ab/<sha256>.json``;
* ``rendition``: an AAC ``.m4a`` for originals not every browser plays (AIFF, WMA, APE, WavPack,
  ...; the table is ``loist.ingest.derive.WEB_PLAYABLE``), ``renditions/ab/<sha256>.m4a``.

A finished job references its blob (``jobs.result_key``), which keeps it alive under the blob-lifetime
rules (``loist.library.lifetime``): recorded with its lock held and checked there, released when its
track is deleted. A job whose claim was lost meanwhile (its lease expired and another worker took
it over) releases what it created, if nothing references it.
"""

from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loist.catalog import Catalog
from loist.catalog.jobs import Claim
from loist.config import Settings
from loist.errors import NotFound
from loist.ingest.derive import (
    RENDITION_MIME,
    transcode_rendition,
    waveform_bytes,
    waveform_peaks,
    web_playable,
)
from loist.library.bulk import NewBlobs, worker_init
from loist.library.lifetime import BlobLifetime
from loist.library.storage_pool import StoragePool
from loist.model import Derivative, Track, TrackStatus
from loist.storage.base import BlobInfo, BlobStore

WAVEFORM = "waveform"
RENDITION = "rendition"
KINDS = (WAVEFORM, RENDITION)
DERIVED_PREFIXES = ("waveforms/", "renditions/")
WAVEFORM_MIME = "application/json"

BeforeFinish = Callable[[Claim], Awaitable[None]]


def waveform_key(sha256: str) -> str:
    return f"waveforms/{sha256[:2]}/{sha256}.json"


def rendition_key(sha256: str) -> str:
    return f"renditions/{sha256[:2]}/{sha256}.m4a"


def derive_kinds(track: Track) -> list[str]:
    """The jobs a newly catalogued track gets: a waveform, and a rendition unless browsers play it.

    Synthetic tracks (benchmarks, staging: one shared silent blob) get none."""
    if track.status != TrackStatus.COMPLETED or not track.blob_key or not track.sha256:
        return []
    if track.source.type == "synthetic":
        return []
    kinds = [WAVEFORM]
    if not web_playable(track.audio.format, track.audio.codec):
        kinds.append(RENDITION)
    return kinds


def _now() -> datetime:
    return datetime.now(UTC)


def _low_priority_worker() -> None:
    """Initializer of the peaks process: the bulk workers' (Ctrl-C, die with the parent), niced."""
    worker_init()
    os.nice(10)


class Derived:
    """Makes and finds the derived blobs of one library."""

    def __init__(
        self, settings: Settings, catalog: Catalog, store: BlobStore, storage_pool: StoragePool, lifetime: BlobLifetime
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self.storage_pool = storage_pool
        self.lifetime = lifetime
        self._peaks_pool: ProcessPoolExecutor | None = None

    def close(self) -> None:
        if self._peaks_pool is not None:
            self._peaks_pool.shutdown(wait=True, cancel_futures=True)
            self._peaks_pool = None

    def _peaks_process(self) -> ProcessPoolExecutor:
        """One process computes waveform peaks: the per-sample loop is Python, and in the server's
        process it held the GIL against the requests (bench/jobs.py: p95 of a ranged read 3.5 ->
        35 ms while a waveform was made in a thread)."""
        if self._peaks_pool is None:
            import multiprocessing

            # spawn, not the bulk ingest's forkserver: that server is one per process and its children
            # get the environment it started with; started from here it would also serve bulk runs.
            ctx = multiprocessing.get_context("spawn")
            self._peaks_pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=_low_priority_worker)
        return self._peaks_pool

    # --- making ----------------------------------------------------------------------------------
    async def run(self, claim: Claim, before_finish: BeforeFinish | None = None) -> bool:
        """Make the claimed job's blob and record the job done; False if the claim was lost meanwhile
        (nothing recorded, and a blob this run created that nothing references is released)."""
        track = await self.catalog.get(claim.track_id)
        if track is None or track.status != TrackStatus.COMPLETED or not track.blob_key or not track.sha256:
            raise NotFound(f"track {claim.track_id} has no audio to derive a {claim.kind} from")
        blobs = NewBlobs(self.store)
        with tempfile.TemporaryDirectory(prefix="loist-job-") as tmp:
            original = Path(tmp) / "original"
            try:
                await self.storage_pool.run(self.store.download_to, track.blob_key, original)
                key, result = await self._make(claim.kind, track, original, Path(tmp), blobs)
                if before_finish is not None:
                    await before_finish(claim)
                return await self._record(claim, key, result, blobs)
            except BaseException:
                await self.lifetime.discard(blobs)
                raise

    async def _make(
        self, kind: str, track: Track, original: Path, tmp: Path, blobs: NewBlobs
    ) -> tuple[str, dict[str, Any]]:
        timeout = self.settings.jobs_timeout_s
        assert track.sha256 is not None
        if kind == WAVEFORM:
            make = functools.partial(
                waveform_peaks, original, duration_s=track.audio.duration_s,
                sample_rate=track.audio.sample_rate_hz, timeout_s=timeout,
            )
            peaks = await asyncio.get_running_loop().run_in_executor(self._peaks_process(), make)
            key = waveform_key(track.sha256)
            await self.storage_pool.run(blobs.put_bytes, key, waveform_bytes(peaks), WAVEFORM_MIME)
            return key, {"length": peaks["length"], "samples_per_pixel": peaks["samples_per_pixel"]}
        if kind == RENDITION:
            out = tmp / "rendition.m4a"
            await asyncio.to_thread(
                transcode_rendition, original, out, channels=track.audio.channels,
                sample_rate=track.audio.sample_rate_hz, timeout_s=timeout,
            )
            key = rendition_key(track.sha256)
            await self.storage_pool.run(blobs.put_file, key, out, RENDITION_MIME)
            return key, {"mime_type": RENDITION_MIME, "size": out.stat().st_size}
        raise NotFound(f"no handler for jobs of kind {kind!r}")

    async def _record(self, claim: Claim, key: str, result: dict[str, Any], blobs: NewBlobs) -> bool:
        async with self.catalog.locked([key]):
            await self.storage_pool.run(blobs.ensure, [key])  # a concurrent release may have taken it
            recorded = await self.catalog.jobs.finish(claim, _now(), key, result)
        if not recorded:
            await self.lifetime.discard(blobs)
        return recorded

    # --- finding ---------------------------------------------------------------------------------
    async def derivatives(self, track_id: uuid.UUID) -> dict[str, Derivative]:
        """The state of each job of a track (its metadata's ``derivatives``)."""
        found = await self.catalog.jobs.list(track_id=track_id, limit=len(KINDS) * 2)
        return {
            job.kind: Derivative(state=job.state, attempts=job.attempts, last_error=job.last_error, updated_at=job.updated_at)
            for job in found
        }

    async def waveform(self, track: Track) -> BlobInfo:
        """The track's waveform blob; NOT_FOUND (with the job's state) while it is not made yet."""
        done = await self.catalog.jobs.done_key(track.id, WAVEFORM)
        if done is None:
            state = (await self.derivatives(track.id)).get(WAVEFORM)
            details = {"state": state.state if state else "none", "retryable": state is not None and state.state != "dead"}
            raise NotFound(f"the waveform of track {track.id} is not ready ({details['state']})", details=details)
        return await self.storage_pool.run(self.store.stat, done[0])

    async def playable(self, track: Track) -> tuple[str, str | None]:
        """The blob key and type browsers should get for a track: its rendition when it has one."""
        assert track.blob_key is not None
        done = await self.catalog.jobs.done_key(track.id, RENDITION)
        if done is not None:
            return done[0], (done[1] or {}).get("mime_type", RENDITION_MIME)
        return track.blob_key, track.audio.mime_type
