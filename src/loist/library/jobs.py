"""Job workers: claim a due job from the catalog's queue, run it, record the outcome.

The queue and its rules (leases, fencing, backoff, dead jobs) are :mod:`loist.catalog.jobs`; what a
job makes is :mod:`loist.library.derived`. A :class:`Worker` runs one job at a time:

* while a job runs, its lease is renewed every third of ``JOBS_LEASE_S``, so a long transcode keeps
  it; a worker killed mid-job stops renewing, and once the lease has expired another worker takes
  the job over (its attempt counted). Handlers are idempotent (content-addressed keys), and only the
  holder of the current lease can record a result, so the job's effect happens once;
* a failure queues the job again after ``JOBS_BACKOFF_S`` x 2^(attempt-1), and after
  ``JOBS_MAX_ATTEMPTS`` attempts leaves it ``dead`` with its last error (``loist jobs retry``);
* a worker that is stopped (cancelled: the server shuts down) gives its job back, due at once and
  its attempt not counted;
* inside ``loist serve`` the workers are few (``JOBS_WORKERS``, default 1), ffmpeg runs ``nice``,
  and an idle worker only reads: requests come first. ``loist worker`` runs them on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from loist.catalog.jobs import Claim
from loist.config import Settings
from loist.errors import LoistError
from loist.library.derived import BeforeFinish, Derived

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one claimed job came to: ``done``, ``queued`` (to be retried), ``dead``, or ``lost``
    (its lease was taken over or the track deleted meanwhile: nothing recorded)."""

    job_id: int
    kind: str
    track_id: str
    attempts: int
    state: Literal["done", "queued", "dead", "lost"]
    error: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {"job": self.job_id, "kind": self.kind, "track": self.track_id, "attempts": self.attempts,
                "state": self.state, "error": self.error}


class Worker:
    """Runs jobs of one library's queue. ``clock`` is read for every claim and lease (tests step it)."""

    def __init__(self, settings: Settings, derived: Derived, *, clock: Clock = utcnow) -> None:
        self.settings = settings
        self.derived = derived
        self.jobs = derived.catalog.jobs
        self.clock = clock
        self.before_finish: BeforeFinish | None = None  # a test hook: the job's blob is written, not yet recorded

    async def run_once(self) -> Outcome | None:
        """Claim and run one due job; None when nothing is due."""
        settings = self.settings
        claim = await self.jobs.claim(
            self.clock(), lease_s=settings.jobs_lease_s, max_attempts=settings.jobs_max_attempts
        )
        if claim is None:
            return None
        log.info("job %d (%s of track %s): attempt %d", claim.id, claim.kind, claim.track_id, claim.attempts)
        renewing = asyncio.create_task(self._renew(claim))
        try:
            recorded = await self.derived.run(claim, self.before_finish)
        except asyncio.CancelledError:  # the process is stopping (a redeploy): give the job back
            with contextlib.suppress(Exception):
                await asyncio.shield(self.jobs.release(claim, self.clock()))
            raise
        except Exception as exc:  # a job's failure never ends the worker: it is recorded on the job
            error = f"{exc.code}: {exc.message}" if isinstance(exc, LoistError) else f"{type(exc).__name__}: {exc}"
            if not isinstance(exc, LoistError):
                log.exception("job %d (%s) failed unexpectedly", claim.id, claim.kind)
            state = await self.jobs.fail(
                claim, self.clock(), error,
                max_attempts=settings.jobs_max_attempts, backoff_s=settings.jobs_backoff_s,
            )
            log.warning("job %d (%s) attempt %d failed (%s): %s", claim.id, claim.kind, claim.attempts, state, error)
            return self._outcome(claim, state or "lost", error)  # type: ignore[arg-type]
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
        return self._outcome(claim, "done" if recorded else "lost")

    def _outcome(self, claim: Claim, state: Literal["done", "queued", "dead", "lost"], error: str | None = None) -> Outcome:
        return Outcome(claim.id, claim.kind, str(claim.track_id), claim.attempts, state, error)

    async def _renew(self, claim: Claim) -> None:
        lease = self.settings.jobs_lease_s
        while True:
            await asyncio.sleep(lease / 3)
            try:
                if not await self.jobs.renew(claim, self.clock(), lease):
                    return  # taken over or deleted: the result will not be recorded
            except LoistError as exc:  # the database is away: try again, the lease may still hold
                log.warning("could not renew the lease of job %d: %s", claim.id, exc)

    async def run(
        self, stop: asyncio.Event, *, wake: asyncio.Event | None = None,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        """Run jobs until ``stop`` is set; when none is due, wait ``JOBS_POLL_S`` (or for ``wake``)."""
        while not stop.is_set():
            try:
                outcome = await self.run_once()
            except LoistError as exc:  # the catalog is away: look again later
                log.warning("job worker: %s", exc)
                outcome = None
            except Exception:  # never let one bad step end the worker for the life of the process
                log.exception("job worker: unexpected error; looking again in JOBS_POLL_S")
                outcome = None
            if outcome is not None:
                if on_outcome is not None:
                    on_outcome(outcome)
                continue
            await _idle(stop, wake, self.settings.jobs_poll_s)


async def _idle(stop: asyncio.Event, wake: asyncio.Event | None, poll_s: float) -> None:
    waits = {asyncio.ensure_future(stop.wait())}
    if wake is not None:
        waits.add(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=poll_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()
    if wake is not None:
        wake.clear()


@contextlib.asynccontextmanager
async def background_workers(
    settings: Settings, derived: Derived, wake: asyncio.Event | None = None, *, count: int | None = None
) -> AsyncIterator[None]:
    """``count`` (default ``JOBS_WORKERS``) workers in this process while the block runs (``loist serve``)."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(Worker(settings, derived).run(stop, wake=wake), name=f"loist-job-worker-{n}")
        for n in range(settings.jobs_workers if count is None else count)
    ]
    try:
        yield
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
