"""Durable background jobs (loist.catalog.jobs, loist.library.jobs) on both engines.

The clock is the worker's (``Worker(clock=...)``): a test steps it past a lease or a backoff
instead of waiting. The kill test runs a real ``loist worker`` process, holds it (its test gate)
after the job's blob is written and before the job is recorded, and SIGKILLs it there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from loist.config import Settings
from loist.library.derived import WAVEFORM, waveform_key
from loist.library.fsck import fsck
from loist.library.jobs import Worker, utcnow
from loist.library.service import Library
from tests.support.audio import AudioFactory

LINE_TIMEOUT_S = 60


def _settings(tmp_path: Path, engine: str, request: pytest.FixtureRequest, **jobs: object) -> Settings:
    values: dict[str, object] = {"data_dir": tmp_path / "data", "_env_file": None, **jobs}
    if engine == "postgresql":
        values["database_url"] = request.getfixturevalue("pg_url")
    return Settings(**values)


@pytest.fixture(params=["sqlite", "postgresql"])
async def lib(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Library]:
    settings = _settings(tmp_path, request.param, request, jobs_max_attempts=3, jobs_backoff_s=10, jobs_lease_s=30)
    library = await Library.open(settings, migrate=True)
    await library.catalog.wipe()
    try:
        yield library
    finally:
        await library.close()


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now


async def test_ingest_queues_a_waveform_and_a_rendition_only_where_browsers_need_one(
    lib: Library, audio_factory: AudioFactory
) -> None:
    mp3 = await lib.ingest_file(audio_factory("mp3"))
    aiff = await lib.ingest_file(audio_factory("aiff"))
    assert set(await lib.derived.derivatives(mp3.id)) == {"waveform"}
    assert set(await lib.derived.derivatives(aiff.id)) == {"waveform", "rendition"}
    assert {d.state for d in (await lib.derived.derivatives(aiff.id)).values()} == {"queued"}
    again = await lib.ingest_file(audio_factory("mp3"))  # the same bytes: no second job
    assert again.id == mp3.id and len(await lib.catalog.jobs.list(track_id=mp3.id)) == 1


async def test_a_job_that_always_fails_ends_dead_with_its_error_after_max_attempts(
    lib: Library, audio_factory: AudioFactory
) -> None:
    track = await lib.ingest_file(audio_factory("mp3", tags={"title": "doomed"}))
    assert track.blob_key
    await lib.storage_pool.run(lib.store.delete, track.blob_key)  # every attempt now fails to read it
    clock = Clock()
    worker = Worker(lib.settings, lib.derived, clock=clock)
    states = []
    for attempt in range(1, 4):
        outcome = await worker.run_once()
        assert outcome is not None and outcome.attempts == attempt
        states.append(outcome.state)
        assert await worker.run_once() is None  # backing off: not due yet
        clock.now += timedelta(seconds=10 * 2 ** (attempt - 1))  # JOBS_BACKOFF_S x 2^(attempt-1)
    assert states == ["queued", "queued", "dead"]
    [job] = await lib.catalog.jobs.list(track_id=track.id)
    assert job.state == "dead" and job.attempts == 3
    assert job.last_error and job.last_error.startswith(("NOT_FOUND", "STORAGE_FAILED"))
    assert await worker.run_once() is None  # dead jobs are never claimed again
    assert (await lib.derived.derivatives(track.id))[WAVEFORM].state == "dead"
    # a replay: `loist jobs retry --dead` queues it again with its attempts reset
    assert await lib.catalog.jobs.retry(clock.now, dead=True) == 1
    [job] = await lib.catalog.jobs.list(track_id=track.id)
    assert job.state == "queued" and job.attempts == 0


async def test_a_claim_taken_over_after_its_lease_cannot_record_its_result(lib: Library, audio_factory: AudioFactory) -> None:
    await lib.ingest_file(audio_factory("mp3"))
    jobs, now = lib.catalog.jobs, utcnow()
    first = await jobs.claim(now, lease_s=30, max_attempts=3)
    assert first is not None
    assert await jobs.claim(now + timedelta(seconds=29), lease_s=30, max_attempts=3) is None  # leased
    second = await jobs.claim(now + timedelta(seconds=31), lease_s=30, max_attempts=3)
    assert second is not None and second.id == first.id and second.attempts == 2
    assert not await jobs.renew(first, now, 30)
    assert not await jobs.finish(first, now, "waveforms/x.json", None)  # the stale worker's result
    assert await jobs.fail(first, now, "late", max_attempts=3, backoff_s=1) is None
    assert await jobs.finish(second, now + timedelta(seconds=32), None, None)
    [job] = await jobs.list()
    assert job.state == "done" and job.result_key is None and job.attempts == 2


async def test_a_lease_that_expires_on_the_last_attempt_makes_the_job_dead(lib: Library, audio_factory: AudioFactory) -> None:
    await lib.ingest_file(audio_factory("mp3"))
    jobs, now = lib.catalog.jobs, utcnow()
    for attempt in range(3):
        assert await jobs.claim(now + timedelta(seconds=31 * attempt), lease_s=30, max_attempts=3) is not None
    assert await jobs.claim(now + timedelta(seconds=31 * 3), lease_s=30, max_attempts=3) is None
    [job] = await jobs.list()
    assert job.state == "dead" and "lease expired" in (job.last_error or "")


async def test_a_stopped_worker_gives_its_job_back(lib: Library, audio_factory: AudioFactory) -> None:
    import asyncio

    await lib.ingest_file(audio_factory("mp3"))
    worker = Worker(lib.settings, lib.derived)
    reached = asyncio.Event()

    async def hold(claim: object) -> None:
        reached.set()
        await asyncio.Event().wait()  # until cancelled

    worker.before_finish = hold
    task = asyncio.create_task(worker.run_once())
    await reached.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [job] = await lib.catalog.jobs.list()
    assert job.state == "queued" and job.attempts == 0 and job.lease_until is None
    assert [blob.key for blob in lib.store.list_keys("waveforms/")] == []  # its blob was released
    worker.before_finish = None
    outcome = await worker.run_once()
    assert outcome is not None and outcome.state == "done" and outcome.attempts == 1


async def test_deleting_a_track_deletes_its_jobs_and_derived_blobs(lib: Library, audio_factory: AudioFactory) -> None:
    track = await lib.ingest_file(audio_factory("wma"))
    worker = Worker(lib.settings, lib.derived)
    while await worker.run_once() is not None:
        pass
    keys = [job.result_key for job in await lib.catalog.jobs.list(track_id=track.id)]
    assert len(keys) == 2 and all(keys) and all(lib.store.exists(key) for key in keys if key)
    report = await fsck(lib, grace=timedelta(0))
    # derived blobs are referenced by their jobs: not orphans (temp files of other processes may be)
    assert (report.orphan_blobs, report.missing_blobs) == (0, 0)
    await lib.delete(track.id)
    assert await lib.catalog.jobs.list() == []
    assert not any(lib.store.exists(key) for key in keys if key)


def _read_event(proc: subprocess.Popen[bytes], event: str) -> dict[str, object]:
    assert proc.stdout is not None
    import selectors
    import time

    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + LINE_TIMEOUT_S
    buffer = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not selector.select(timeout=remaining):
            proc.kill()
            raise AssertionError(f"no {event!r} line from loist worker within {LINE_TIMEOUT_S}s")
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            raise AssertionError(f"loist worker exited ({proc.wait()}) before {event!r}")
        buffer += chunk
        for line in buffer.splitlines():
            if line.startswith(b"{") and json.loads(line).get("event") == event:
                return json.loads(line)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
async def test_a_worker_killed_mid_job_leaves_it_to_be_completed_once_after_the_lease_expires(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest, audio_factory: AudioFactory
) -> None:
    settings = _settings(tmp_path, engine, request, jobs_lease_s=30)
    library = await Library.open(settings, migrate=True)
    try:
        await library.catalog.wipe()
        track = await library.ingest_file(audio_factory("mp3", duration=2.0))
        assert track.sha256
        gate_read, gate_write = os.pipe()
        env = {**os.environ, "LOIST_DATA_DIR": str(settings.data_dir), "JOBS_LEASE_S": "30",
               "LOIST_TEST_JOB_GATE_FD": str(gate_read)}
        if engine == "postgresql":
            env["DATABASE_URL"] = request.getfixturevalue("pg_url")
        proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "loist", "worker", "--json"], env=env, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, pass_fds=(gate_read,),
        )
        os.close(gate_read)
        try:
            paused = _read_event(proc, "paused")  # the blob is written; the job is not recorded
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
        finally:
            os.close(gate_write)
            if proc.poll() is None:
                proc.kill()
        key = waveform_key(track.sha256)
        assert library.store.exists(key)
        [job] = await library.catalog.jobs.list(track_id=track.id)
        assert job.id == paused["job"] and job.state == "running" and job.attempts == 1
        assert job.lease_until is not None and job.result_key is None

        clock = Clock()
        worker = Worker(settings, library.derived, clock=clock)
        assert await worker.run_once() is None  # the dead worker's lease still holds
        clock.now = job.lease_until + timedelta(seconds=1)
        outcome = await worker.run_once()
        assert outcome is not None and outcome.state == "done" and outcome.attempts == 2
        assert await worker.run_once() is None

        [job] = await library.catalog.jobs.list(track_id=track.id)
        assert job.state == "done" and job.attempts == 2 and job.result_key == key
        assert [blob.key for blob in library.store.list_keys("waveforms/")] == [key]  # one blob, once
        data = json.loads(b"".join(library.store.iter_range(key)))
        assert data["version"] == 2 and data["length"] * 2 == len(data["data"])
        report = await fsck(library, grace=timedelta(0))
        assert (report.orphan_blobs, report.missing_blobs) == (0, 0)
    finally:
        await library.close()
