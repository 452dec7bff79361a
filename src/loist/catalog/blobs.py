"""What the catalog knows about blobs: locks per blob key, which keys rows reference, row repairs.

**Blob locks** (:func:`hold`, used through ``Catalog.locked``): one write transaction that holds a
lock on each of a set of blob keys, so that the decision "this blob may go" or "this row may
reference this blob" and the blob operation that follows it are not interleaved with the opposite
decision on the same key by another process (see ``loist.library.lifetime``).

- PostgreSQL: transaction-level advisory locks, ``pg_advisory_xact_lock(NAMESPACE, id)`` with a
  32-bit id hashed from the key, taken in ascending id order (two holders never wait for each other
  in a cycle). Distinct keys may share an id: that only makes unrelated work wait a moment.
- SQLite: ``BEGIN IMMEDIATE``, the database's single writer lock; every key is covered at once.

Both first *try* the lock; when it is taken, ``on_blocked`` is awaited before waiting for it, so a
test can tell "waiting for a lock" from "has not got there yet" without timing anything. While the
locks are held, the :class:`~loist.catalog.Catalog` methods called from the same task run inside
that transaction (a context variable, :func:`held`), and they commit or roll back with it; a task
started inside gets transactions of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loist.catalog.engine import transaction
from loist.catalog.schema import jobs, track_columns, tracks
from loist.model import TrackStatus

NAMESPACE = 0x6C6F6973  # "lois": the first key of every blob lock (the migration lock is a one-key lock)
IN_CHUNK = 500

OnBlocked = Callable[[], Awaitable[None]] | None

# (engine, connection, the task holding them): tasks started inside inherit the variable, not the locks.
_held: ContextVar[tuple[AsyncEngine, AsyncConnection, asyncio.Task[object] | None] | None] = ContextVar(
    "loist_blob_locks", default=None
)


class BlobRefs(NamedTuple):
    """The blob references of one row (what ``loist fsck`` checks)."""

    id: uuid.UUID
    status: str
    blob_key: str | None
    thumbnail_key: str | None


def held(engine: AsyncEngine) -> AsyncConnection | None:
    """The connection holding blob locks in this task on ``engine``, if any."""
    value = _held.get()
    if value is None or value[0] is not engine or value[2] is not asyncio.current_task():
        return None
    return value[1]


def lock_id(key: str) -> int:
    """The 32-bit lock id of a blob key (the same in every process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)


@asynccontextmanager
async def hold(engine: AsyncEngine, keys: Iterable[str], on_blocked: OnBlocked = None) -> AsyncIterator[None]:
    """Hold the locks of ``keys`` for one transaction; it commits when the block ends normally.

    SQLite has one lock, the file's write lock: taken like any write (``engine.transaction``, in
    this process's writer queue, ``BEGIN IMMEDIATE`` retried within ``SQLITE_WRITE_TIMEOUT_S``).
    PostgreSQL takes one advisory transaction lock per key, in ascending order.
    """
    if held(engine) is not None:
        raise RuntimeError("blob locks are already held in this task (they are not re-entrant)")
    ids = sorted({lock_id(key) for key in keys if key})
    if engine.dialect.name == "sqlite":
        async with transaction(engine, write=True, on_blocked=on_blocked) as conn:
            with _holding(engine, conn):
                yield
        return
    async with engine.connect() as conn:
        if ids:
            await _pg_lock(conn, ids, on_blocked)
        with _holding(engine, conn):
            try:
                yield
                await conn.commit()
            except BaseException:
                await conn.rollback()
                raise


@contextmanager
def _holding(engine: AsyncEngine, conn: AsyncConnection) -> Iterator[None]:
    token = _held.set((engine, conn, asyncio.current_task()))
    try:
        yield
    finally:
        _held.reset(token)


_IDS = sa.bindparam("ids", type_=sa.ARRAY(sa.Integer()))  # the PostgreSQL dialect makes it its ARRAY
# One statement each; unnest yields the ids in array (ascending) order and each is locked in turn.
_TRY = sa.text("SELECT bool_and(pg_try_advisory_xact_lock(:ns, k)) FROM unnest(:ids) AS k").bindparams(_IDS)
_WAIT = sa.text("SELECT count(pg_advisory_xact_lock(:ns, k)) FROM unnest(:ids) AS k").bindparams(_IDS)


async def _pg_lock(conn: AsyncConnection, ids: list[int], on_blocked: OnBlocked) -> None:
    if (await conn.execute(_TRY, {"ns": NAMESPACE, "ids": ids})).scalar():
        return
    # Some were taken. Locks got by trying are held out of order: give them all back, then wait
    # for each in ascending order, as every other holder does.
    await conn.rollback()
    if on_blocked is not None:
        await on_blocked()
    await conn.execute(_WAIT, {"ns": NAMESPACE, "ids": ids})


# --- references -----------------------------------------------------------------------------


async def referenced_keys(conn: AsyncConnection, keys: Sequence[str]) -> set[str]:
    """Which of ``keys`` any row (of any status) references, as audio or thumbnail, or any job as
    its derived blob (waveform, rendition)."""
    found: set[str] = set()
    unique = sorted(set(keys))
    for start in range(0, len(unique), IN_CHUNK):
        chunk = unique[start : start + IN_CHUNK]
        query = sa.union(
            sa.select(tracks.c.blob_key.label("key")).where(tracks.c.blob_key.in_(chunk)),
            sa.select(tracks.c.thumbnail_key.label("key")).where(tracks.c.thumbnail_key.in_(chunk)),
            sa.select(jobs.c.result_key.label("key")).where(jobs.c.result_key.in_(chunk)),
        )
        found.update((await conn.execute(query)).scalars().all())
    return found


async def completed_refs(conn: AsyncConnection, after: uuid.UUID | None, limit: int) -> list[BlobRefs]:
    """A page of COMPLETED rows' blob references, in id order after ``after``."""
    query = (
        sa.select(tracks.c.id, tracks.c.status, tracks.c.blob_key, tracks.c.thumbnail_key)
        .where(tracks.c.status == TrackStatus.COMPLETED.value)
        .order_by(tracks.c.id)
        .limit(limit)
    )
    if after is not None:
        query = query.where(tracks.c.id > after)
    return [BlobRefs(*row) for row in (await conn.execute(query)).all()]


# --- repairs --------------------------------------------------------------------------------


async def restore(
    conn: AsyncConnection, track_id: uuid.UUID, blob_key: str, thumbnail_key: str | None
) -> sa.RowMapping | None:
    """Make a row COMPLETED again, pointing at blobs the caller has just verified."""
    statement = (
        sa.update(tracks)
        .where(tracks.c.id == track_id)
        .values(
            status=TrackStatus.COMPLETED.value, error_code=None, error_message=None,
            blob_key=blob_key, thumbnail_key=thumbnail_key, updated_at=_now(),
        )
        .returning(*track_columns)
    )
    return (await conn.execute(statement)).mappings().one_or_none()


async def mark_broken(conn: AsyncConnection, track_id: uuid.UUID, code: str, message: str) -> bool:
    """Turn a row whose audio is gone into a FAILED row (metadata, sha256 and keys kept).

    A source location has at most one FAILED row: a plain failure record of the same location
    (no sha256) gives way; another broken track holding it means this one is left as it is (False).
    """
    location = (
        await conn.execute(sa.select(tracks.c.source_location).where(tracks.c.id == track_id))
    ).scalar_one_or_none()
    if location is not None:
        failed_here = sa.and_(
            tracks.c.source_location == location,
            tracks.c.status == TrackStatus.FAILED.value,
            tracks.c.id != track_id,
        )
        if (await conn.execute(sa.select(sa.func.count()).where(failed_here, tracks.c.sha256.is_not(None)))).scalar():
            return False
        await conn.execute(sa.delete(tracks).where(failed_here, tracks.c.sha256.is_(None)))
    result = await conn.execute(
        sa.update(tracks)
        .where(tracks.c.id == track_id)
        .values(status=TrackStatus.FAILED.value, error_code=code, error_message=message, updated_at=_now())
    )
    return bool(result.rowcount)


async def drop_thumbnail(conn: AsyncConnection, track_id: uuid.UUID) -> bool:
    """Forget a thumbnail whose blob is gone (the track still plays; a re-ingest brings it back)."""
    result = await conn.execute(
        sa.update(tracks).where(tracks.c.id == track_id).values(thumbnail_key=None, updated_at=_now())
    )
    return bool(result.rowcount)


def _now() -> datetime:
    return datetime.now(UTC)
