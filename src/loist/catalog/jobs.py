"""The durable job queue, on the catalog itself (the ``jobs`` table, migration 0008).

One row per (track, kind) of derived work; the embedded default needs no other service.

* **enqueue** (:func:`enqueue`): in the transaction that inserts the track (``Catalog.add_many``),
  so a committed track always has its jobs; a second enqueue of the same (track, kind) is a no-op.
* **claim** (:meth:`JobTable.claim`): the oldest due job (``queued`` and due, or ``running`` with an
  expired lease: its worker died) is leased to the caller for ``lease_s`` with a fresh token, and its
  attempt counted. PostgreSQL selects it ``FOR UPDATE SKIP LOCKED`` (workers never wait for each
  other and never take the same row); SQLite takes its single write lock first (``BEGIN
  IMMEDIATE``, ``engine.transaction(write=True)``), so claims are one at a time across processes.
  A job whose lease expired on its last allowed attempt is made ``dead`` instead of run again.
* **renew / finish / fail**: fenced by the lease token. A worker whose lease was taken over (it
  stalled past it) finds its token gone: it changes nothing, and the caller releases any blob it
  wrote. So whatever the timing, one claim's result is the one recorded.
* **fail**: back to ``queued`` with an exponential backoff, or ``dead`` with the error once
  ``max_attempts`` have been used.

Every time is passed in by the caller (``now``): the worker reads the clock once per step, and a
test can step past a lease without waiting for it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from loist.catalog.schema import jobs
from loist.catalog.sqlite_bulk import utc_text
from loist.model import Job

IN_CHUNK = 500
ERROR_TEXT = 2000  # longest last_error kept

Tx = Callable[[str], AbstractAsyncContextManager[AsyncConnection]]


@dataclass(frozen=True, slots=True)
class Claim:
    """A job leased to one worker: only the holder of ``token`` may renew, finish or fail it."""

    id: int
    track_id: uuid.UUID
    kind: str
    attempts: int  # this one included
    token: str
    lease_until: datetime


async def enqueue(conn: AsyncConnection, items: Iterable[tuple[uuid.UUID, str]], now: datetime) -> None:
    """Queue each (track, kind) not queued already, due now (inside the caller's transaction).

    On SQLite the rows go to the driver as plain tuples (as ``sqlite_bulk`` does for tracks): through
    SQLAlchemy's per-row parameter processing, queueing the jobs of a 1,000-track batch cost a third
    of the batch's insert time (measured: docs/benchmarks.md)."""
    pairs = list(items)
    if not pairs:
        return
    if conn.dialect.name == "sqlite":
        stamp = utc_text(now)
        await conn.exec_driver_sql(_SQLITE_ENQUEUE, [(track_id.hex, kind, stamp, stamp, stamp) for track_id, kind in pairs])
        return
    from sqlalchemy.dialects.postgresql import insert

    rows = [
        {"track_id": track_id, "kind": kind, "state": "queued", "attempts": 0, "run_at": now,
         "created_at": now, "updated_at": now}
        for track_id, kind in pairs
    ]
    await conn.execute(insert(jobs).on_conflict_do_nothing(index_elements=[jobs.c.track_id, jobs.c.kind]), rows)


_SQLITE_ENQUEUE = (
    "INSERT INTO jobs (track_id, kind, state, attempts, run_at, created_at, updated_at) "
    "VALUES (?, ?, 'queued', 0, ?, ?, ?) ON CONFLICT (track_id, kind) DO NOTHING"
)


def _due(now: datetime) -> sa.ColumnElement[bool]:
    return sa.or_(
        sa.and_(jobs.c.state == "queued", jobs.c.run_at <= now),
        sa.and_(jobs.c.state == "running", jobs.c.lease_until < now),
    )


def _job(row: Any) -> Job:
    return Job.model_validate(dict(row))


class JobTable:
    """The queue's operations on one catalog (``Catalog.jobs``); ``tx`` is the catalog's transaction."""

    def __init__(self, tx: Tx) -> None:
        self._tx = tx

    async def claim(
        self, now: datetime, *, lease_s: float, max_attempts: int, kinds: Sequence[str] | None = None
    ) -> Claim | None:
        """Lease the oldest due job, or None when nothing is due (see the module docstring).

        An idle poll only reads (no write lock on SQLite: it never delays an ingest)."""
        async with self._tx("query") as conn:
            if (await conn.execute(sa.select(jobs.c.id).where(_due(now)).limit(1))).first() is None:
                return None
        async with self._tx("update") as conn:
            while True:
                query = (
                    sa.select(jobs.c.id, jobs.c.track_id, jobs.c.kind, jobs.c.state, jobs.c.attempts)
                    .where(_due(now))
                    .order_by(jobs.c.run_at, jobs.c.id)
                    .limit(1)
                    .with_for_update(skip_locked=True)  # PostgreSQL; SQLite holds its write lock already
                )
                if kinds:
                    query = query.where(jobs.c.kind.in_(list(kinds)))
                row = (await conn.execute(query)).mappings().one_or_none()
                if row is None:
                    return None
                if row["state"] == "running" and row["attempts"] >= max_attempts:
                    error = f"the worker stopped mid-job (lease expired) on attempt {row['attempts']} of {max_attempts}"
                    await conn.execute(
                        sa.update(jobs).where(jobs.c.id == row["id"]).values(
                            state="dead", lease_until=None, lease_token=None, last_error=error, updated_at=now
                        )
                    )
                    continue
                token = uuid.uuid4().hex
                until = now + timedelta(seconds=lease_s)
                await conn.execute(
                    sa.update(jobs).where(jobs.c.id == row["id"]).values(
                        state="running", attempts=jobs.c.attempts + 1, run_at=now,
                        lease_until=until, lease_token=token, updated_at=now,
                    )
                )
                return Claim(row["id"], row["track_id"], row["kind"], row["attempts"] + 1, token, until)

    async def renew(self, claim: Claim, now: datetime, lease_s: float) -> bool:
        """Extend a running job's lease; False when it is no longer this claim's (taken over, deleted)."""
        async with self._tx("update") as conn:
            result = await conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == claim.id, jobs.c.lease_token == claim.token)
                .values(lease_until=now + timedelta(seconds=lease_s), updated_at=now)
            )
            return bool(result.rowcount)

    async def finish(self, claim: Claim, now: datetime, result_key: str | None, result: dict[str, Any] | None) -> bool:
        """Record the job done with its derived blob; False (nothing changed) if the claim was lost."""
        async with self._tx("update") as conn:
            outcome = await conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == claim.id, jobs.c.lease_token == claim.token)
                .values(
                    state="done", result_key=result_key, result=result, last_error=None,
                    lease_until=None, lease_token=None, updated_at=now,
                )
            )
            return bool(outcome.rowcount)

    async def fail(self, claim: Claim, now: datetime, error: str, *, max_attempts: int, backoff_s: float) -> str | None:
        """Record a failed attempt: ``queued`` again after a backoff, or ``dead`` after the last
        allowed attempt. The new state, or None if the claim was lost."""
        dead = claim.attempts >= max_attempts
        delay = backoff_s * 2 ** (claim.attempts - 1)
        state = "dead" if dead else "queued"
        async with self._tx("update") as conn:
            outcome = await conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == claim.id, jobs.c.lease_token == claim.token)
                .values(
                    state=state, last_error=error[:ERROR_TEXT], lease_until=None, lease_token=None,
                    run_at=now if dead else now + timedelta(seconds=delay), updated_at=now,
                )
            )
            return state if outcome.rowcount else None

    async def release(self, claim: Claim, now: datetime) -> bool:
        """Give a claimed job back, due now and its attempt not counted (its worker is stopping)."""
        async with self._tx("update") as conn:
            outcome = await conn.execute(
                sa.update(jobs)
                .where(jobs.c.id == claim.id, jobs.c.lease_token == claim.token)
                .values(state="queued", attempts=jobs.c.attempts - 1, run_at=now, lease_until=None,
                        lease_token=None, updated_at=now)
            )
            return bool(outcome.rowcount)

    async def retry(self, now: datetime, *, ids: Sequence[int] = (), dead: bool = False) -> int:
        """Queue jobs again, due now, with their attempts reset: ``ids`` (any state but running),
        and every dead job when ``dead``. How many were queued."""
        where: list[sa.ColumnElement[bool]] = []
        if ids:
            where.append(sa.and_(jobs.c.id.in_(list(ids)), jobs.c.state != "running"))
        if dead:
            where.append(jobs.c.state == "dead")
        if not where:
            return 0
        async with self._tx("update") as conn:
            outcome = await conn.execute(
                sa.update(jobs).where(sa.or_(*where)).values(
                    state="queued", attempts=0, run_at=now, last_error=None, updated_at=now
                )
            )
            return int(outcome.rowcount or 0)

    async def list(
        self, *, state: str | None = None, track_id: uuid.UUID | None = None, limit: int = 100
    ) -> list[Job]:
        """Jobs, newest first (by id), filtered by state and track."""
        query = sa.select(*jobs.c).order_by(jobs.c.id.desc()).limit(limit)
        if state is not None:
            query = query.where(jobs.c.state == state)
        if track_id is not None:
            query = query.where(jobs.c.track_id == track_id)
        async with self._tx("query") as conn:
            return [_job(row) for row in (await conn.execute(query)).mappings()]

    async def counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        query = sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
        async with self._tx("query") as conn:
            found = {state: int(n) for state, n in (await conn.execute(query)).all()}
        return {state: found.get(state, 0) for state in ("queued", "running", "done", "dead")}

    async def done_key(self, track_id: uuid.UUID, kind: str) -> tuple[str, dict[str, Any] | None] | None:
        """The derived blob of a finished (track, kind) job, with its result, or None."""
        query = sa.select(jobs.c.result_key, jobs.c.result).where(
            jobs.c.track_id == track_id, jobs.c.kind == kind, jobs.c.state == "done", jobs.c.result_key.is_not(None)
        )
        async with self._tx("query") as conn:
            row = (await conn.execute(query)).one_or_none()
        return None if row is None else (row[0], row[1])

    async def done_results(self, after: int, limit: int) -> list[tuple[int, uuid.UUID, str, str]]:
        """A page of finished jobs with a derived blob: ``(id, track_id, kind, result_key)``, in id
        order after ``after`` (``loist fsck`` checks each blob is there)."""
        query = (
            sa.select(jobs.c.id, jobs.c.track_id, jobs.c.kind, jobs.c.result_key)
            .where(jobs.c.id > after, jobs.c.state == "done", jobs.c.result_key.is_not(None))
            .order_by(jobs.c.id)
            .limit(limit)
        )
        async with self._tx("query") as conn:
            return [(int(row[0]), row[1], str(row[2]), str(row[3])) for row in (await conn.execute(query)).all()]

    async def delete_for_track(self, track_id: uuid.UUID) -> list[str]:
        """Delete a track's jobs (with the track, under its blob locks); the derived blob keys they held."""
        async with self._tx("delete") as conn:
            result = await conn.execute(
                sa.delete(jobs).where(jobs.c.track_id == track_id).returning(jobs.c.result_key)
            )
            return [key for key in result.scalars().all() if key]

    async def result_keys(self) -> AsyncIterator[list[str]]:
        """Every derived blob key, a page at a time (wipe)."""
        after = 0
        while True:
            query = (
                sa.select(jobs.c.id, jobs.c.result_key)
                .where(jobs.c.id > after, jobs.c.result_key.is_not(None))
                .order_by(jobs.c.id)
                .limit(IN_CHUNK)
            )
            async with self._tx("query") as conn:
                rows = (await conn.execute(query)).all()
            if not rows:
                return
            after = rows[-1][0]
            yield [row[1] for row in rows]
