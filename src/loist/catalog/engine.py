"""Building the async engine: drivers, pool and per-connection SQLite settings in one place, and
the one way a catalog transaction begins (:func:`transaction`).

SQLite allows one writer at a time per file, across processes (a server and ``loist seed``, say).
A write transaction therefore starts with ``BEGIN IMMEDIATE``: the write lock is taken before any
work, so the only place a writer ever waits is its first statement and nothing has to be redone.
While another writer holds the lock, SQLite's busy handler waits up to ``SQLITE_BUSY_TIMEOUT_MS``
(10 ms: it looks again after 1, 2 and 5 ms), then the ``BEGIN IMMEDIATE`` is repeated, until the
write timeout (``SQLITE_WRITE_TIMEOUT_S``) has passed. So a waiting writer looks every few
milliseconds (SQLite's handler alone slows to one look per 100 ms after the first third of a
second) and gets in between another writer's short transactions. Within one process the writers
queue first (an ``asyncio.Lock``), so only one of them polls and the lock passes straight to the
next in arrival order. Any other wait for a lock (a read while another process checkpoints the
WAL on close, a migration) uses SQLite's busy handler with the write timeout as its limit. Reads
never take the write lock: in WAL mode readers and the writer do not block each other.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool, StaticPool

from loist.catalog.errors import database_failed, normalize_url
from loist.errors import DatabaseFailed
from loist.telemetry import metrics, tracing

log = logging.getLogger(__name__)

# One wait inside SQLite's busy handler for the write lock; then BEGIN IMMEDIATE is tried again, until
# the write timeout. Short, so a waiting writer's polling keeps restarting at 1 ms intervals.
SQLITE_BUSY_TIMEOUT_MS = 10
DEFAULT_WRITE_TIMEOUT_S = 30.0
WRITE_TIMEOUT_OPTION = "loist_write_timeout_s"  # an engine execution option: carried by the engine
SQLITE_BUSY = 5  # the primary result code of SQLITE_BUSY and its extended forms
# Reads through a memory map (the OS page cache) instead of read() calls into a 2 MB per-connection
# cache: a search touching thousands of pages spent most of its time in system calls (measured at
# 100K tracks: a genre filter's page 24 ms -> 13 ms). Address space only, shared by all connections.
SQLITE_MMAP_BYTES = 1 << 30
PG_CONNECT_TIMEOUT_S = 10
# Per engine and event loop: the queue of this process's SQLite writers (see ``_turn``).
_Turns = weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
_WRITER_TURNS: weakref.WeakKeyDictionary[Any, _Turns] = weakref.WeakKeyDictionary()


def build_engine(
    url: str | None,
    *,
    pool_size: int = 5,
    max_overflow: int | None = None,
    null_pool: bool = False,
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
) -> AsyncEngine:
    """An async engine for ``url`` (plain ``sqlite://`` / ``postgresql://`` forms accepted).

    SQLite: the parent directory is created, and every connection turns on foreign keys (the
    ``track_genres`` cascade needs them), WAL (readers never block the writer) and a short busy
    timeout; :func:`transaction` waits for the write lock up to ``write_timeout_s``. PostgreSQL: a
    bounded pool with pre-ping, so a Cloud SQL connection dropped while idle is replaced rather
    than surfacing as an error; at most ``pool_size + max_overflow`` connections (``max_overflow``
    defaults to ``pool_size``), the figure the deployment's connection budget counts.
    """
    async_url = make_url(normalize_url(url))
    kwargs: dict[str, Any] = {}
    if async_url.get_backend_name() == "sqlite":
        database = async_url.database or ""
        memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if not memory:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        if memory:
            kwargs["poolclass"] = StaticPool
        elif null_pool:
            kwargs["poolclass"] = NullPool
        else:
            kwargs["pool_size"] = pool_size
        engine = create_async_engine(
            async_url, execution_options={WRITE_TIMEOUT_OPTION: write_timeout_s}, **kwargs
        )
        event.listen(engine.sync_engine, "connect", functools.partial(_sqlite_on_connect, write_timeout_s))
        return _observed(engine)
    # jit off: PostgreSQL's JIT compiles plans whose estimated cost is high (counts and rankings over
    # a large library) and adds 10+ ms to queries that run in a few: search latency is the priority.
    # plan_cache_mode: asyncpg prepares every statement, and after five runs PostgreSQL may switch a
    # prepared statement to a generic plan, blind to the parameters; a search's best plan depends on
    # them (a rare genre or a common word), so plan each execution (0.2-0.4 ms): at 1M tracks the
    # search mix's p95 went from 175 to 129 ms, the filters' from 96 to 29 ms.
    settings = {"jit": "off", "plan_cache_mode": "force_custom_plan"}
    kwargs["connect_args"] = {"timeout": PG_CONNECT_TIMEOUT_S, "server_settings": settings}
    if null_pool:
        kwargs["poolclass"] = NullPool
    else:
        overflow = pool_size if max_overflow is None else max_overflow
        kwargs.update(pool_size=pool_size, max_overflow=overflow, pool_pre_ping=True)
    engine = create_async_engine(async_url, **kwargs)
    engine.sync_engine.dialect.do_ping = _ping_once  # type: ignore[method-assign]
    return _observed(engine)


def _ping_once(dbapi_connection: Any) -> bool:
    """The pool's pre-ping in one round trip: SQLAlchemy's asyncpg ping wraps its ``;`` in BEGIN and
    ROLLBACK (for PgBouncer's transaction mode, which Loist does not use: it talks to PostgreSQL or
    Cloud SQL directly), three round trips on every checkout, half of those of a one-statement search."""
    from sqlalchemy.util import await_only

    try:
        await_only(dbapi_connection._connection.fetchrow(";"))
    except Exception as error:  # noqa: BLE001 - translated (and a lost connection detected) as SQLAlchemy's ping does
        dbapi_connection._handle_exception(error)
    return True


def _observed(engine: AsyncEngine) -> AsyncEngine:
    """The pool gauges and a span per statement, while metrics / tracing are on (``loist.telemetry``)."""
    metrics.watch_pool(engine.sync_engine)
    tracing.watch_engine(engine.sync_engine)
    return engine


def _sqlite_on_connect(write_timeout_s: float, dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {_ms(write_timeout_s)}")  # incidental waits (see above)
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable with WAL, much faster than FULL
        cursor.execute(f"PRAGMA mmap_size = {SQLITE_MMAP_BYTES}")
    finally:
        cursor.close()


@asynccontextmanager
async def transaction(
    engine: AsyncEngine, *, write: bool = False, on_blocked: OnBlocked = None
) -> AsyncIterator[AsyncConnection]:
    """One transaction on ``engine``, committed when the block ends without an error.

    ``write`` on SQLite: the writers of this process queue (first come, first served) for their
    turn, and the one whose turn it is takes the file's write lock up front (``BEGIN IMMEDIATE``,
    retried while another process holds it; see the module docstring), so a write never fails
    half-way for lack of the lock. A write that waited ``SQLITE_WRITE_TIMEOUT_S`` in vain is
    :class:`DatabaseFailed` (retryable). PostgreSQL locks rows, not the database: there a
    transaction just begins. ``on_blocked`` is awaited once if the write has to wait (another
    writer of this process or another process holds the lock): tests use it to see a writer queue.
    """
    if not (write and engine.dialect.name == "sqlite"):
        async with engine.begin() as conn:
            yield conn
        return
    loop = asyncio.get_running_loop()
    timeout_s = float(engine.get_execution_options().get(WRITE_TIMEOUT_OPTION, DEFAULT_WRITE_TIMEOUT_S))
    started = loop.time()
    blocked = _once(on_blocked)
    async with _turn(engine, loop, timeout_s, blocked):
        async with engine.begin() as conn:
            await _begin_immediate(conn, started, timeout_s, blocked)
            yield conn


OnBlocked = Callable[[], Awaitable[None]] | None


def _once(on_blocked: OnBlocked) -> Callable[[], Awaitable[None]]:
    """``on_blocked`` made safe to call many times: it runs the first time only."""
    called = False

    async def blocked() -> None:
        nonlocal called
        if on_blocked is not None and not called:
            called = True
            await on_blocked()

    return blocked


@asynccontextmanager
async def _turn(
    engine: AsyncEngine, loop: asyncio.AbstractEventLoop, timeout_s: float, blocked: Callable[[], Awaitable[None]]
) -> AsyncIterator[None]:
    """This process's writers one at a time, in arrival order: SQLite admits one writer anyway, and
    a queue hands the lock on at once instead of leaving it to whichever poller looks first."""
    locks = _WRITER_TURNS.setdefault(engine.sync_engine, weakref.WeakKeyDictionary())
    lock = locks.setdefault(loop, asyncio.Lock())
    if lock.locked():
        await blocked()
    try:
        async with asyncio.timeout(timeout_s):
            await lock.acquire()
    except TimeoutError:
        raise _locked(timeout_s, "other writers of this process") from None
    try:
        yield
    finally:
        lock.release()


async def _begin_immediate(
    conn: AsyncConnection, started: float, timeout_s: float, blocked: Callable[[], Awaitable[None]]
) -> None:
    """``BEGIN IMMEDIATE``, retried while another writer holds the lock, until ``timeout_s`` after
    ``started`` (event-loop time).

    One round trip per attempt: the busy timeout is shortened for the ``BEGIN`` only (an
    ``executescript`` on the driver's connection; SQLAlchemy has begun nothing on SQLite yet).
    """
    driver = (await conn.get_raw_connection()).driver_connection
    attempt_sql = f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}; BEGIN IMMEDIATE; "
    restore_sql = f"PRAGMA busy_timeout = {_ms(timeout_s)};"
    loop = asyncio.get_running_loop()
    attempts = 0
    while True:
        try:
            await driver.executescript(attempt_sql + restore_sql)
            break
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                await _restore(driver, restore_sql)
                raise database_failed(exc, conn.engine.url, action="write") from None
        attempts += 1
        await blocked()
        waited = loop.time() - started
        if waited >= timeout_s:
            await _restore(driver, restore_sql)
            raise _locked(waited, "another process")
        log.debug("SQLite write lock busy, waiting (attempt %d, %.3f s so far)", attempts, waited)
    waited = loop.time() - started
    if attempts:
        log.log(logging.INFO if waited >= 1 else logging.DEBUG,
                "SQLite write lock taken after %.3f s (%d busy attempts)", waited, attempts)


def _locked(waited: float, holder: str) -> DatabaseFailed:
    return DatabaseFailed(
        f"the database stayed locked by {holder} for {waited:.1f} s (SQLITE_WRITE_TIMEOUT_S); "
        "nothing was written, try again",
        details={"retryable": True, "waited_s": round(waited, 3)},
    )


async def _restore(driver: Any, restore_sql: str) -> None:
    """Put the connection's busy timeout back after a failed ``BEGIN`` (best effort)."""
    try:
        await driver.executescript(restore_sql)
    except sqlite3.Error:
        log.debug("could not restore the busy timeout", exc_info=True)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """Whether a driver error is SQLite's ``SQLITE_BUSY`` ("database is locked")."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == SQLITE_BUSY
    return "database is locked" in str(exc)
