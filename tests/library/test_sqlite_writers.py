"""Two writers on one SQLite file (issue #16): a user's write waits for the lock instead of failing,
and a long seed commits in short transactions that other writers get in between.

The other writer is a real second process holding SQLite's write lock (``BEGIN IMMEDIATE``) until
the test tells it to let go: nothing here waits on a clock.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from loist.catalog import engine as engine_module
from loist.config import Settings
from loist.errors import DatabaseFailed, ErrorCode
from loist.library.service import Library

HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
print("released", flush=True)
"""


class LockHolder:
    """A second process that holds the database's write lock until :meth:`release`."""

    def __init__(self, database: Path) -> None:
        self.database = database
        self.proc: subprocess.Popen[str] | None = None

    async def lock(self) -> None:
        """Start the process; return once it holds the lock."""
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-c", HOLDER, str(self.database)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert await asyncio.to_thread(self.proc.stdout.readline) == "locked\n"  # type: ignore[union-attr]

    async def release(self) -> None:
        assert self.proc is not None
        self.proc.stdin.write("\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        assert await asyncio.to_thread(self.proc.stdout.readline) == "released\n"  # type: ignore[union-attr]
        assert await asyncio.to_thread(self.proc.wait) == 0

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class BusyLog(logging.Handler):
    """Counts the engine's "write lock busy" records; ``waited(n)`` is set at the n-th one."""

    def __init__(self, n: int) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.n = n
        self.waited = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("SQLite write lock busy"):
            self.count += 1
            if self.count >= self.n:
                self.waited.set()


@pytest.fixture
def busy_log() -> Iterator[BusyLog]:
    handler = BusyLog(n=5)
    logger = logging.getLogger("loist.catalog.engine")
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def library(tmp_path: Path) -> AsyncIterator[Library]:
    lib = await Library.open(_settings(tmp_path))
    try:
        yield lib
    finally:
        await lib.close()


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[LockHolder]:
    holding = LockHolder(tmp_path / "data" / "loist.db")
    try:
        yield holding
    finally:
        holding.kill()


async def test_update_waits_out_another_process_holding_the_lock_longer_than_the_busy_timeout(
    library: Library, holder: LockHolder, busy_log: BusyLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite's own wait per attempt, made small: the update below waits 5 times longer than it
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 20)
    await library.seed_synthetic(2, seed=1)
    track = (await library.list()).items[0]
    await holder.lock()

    update = asyncio.create_task(library.update_tags(track.id, {"title": "Edited while locked"}))
    waited = asyncio.create_task(busy_log.waited.wait())
    await asyncio.wait({update, waited}, return_when=asyncio.FIRST_COMPLETED)
    assert not update.done(), f"the update ended while the lock was held: {update.exception()!r}"
    assert busy_log.count >= 5  # it found the lock taken at least 5 times (5 x 20 ms) and kept waiting
    # meanwhile reads are not blocked (WAL), and see the old title
    assert (await library.get(track.id)).tags.title == track.tags.title

    await holder.release()
    updated = await update
    assert updated.tags.title == "Edited while locked"
    assert (await library.get(track.id)).tags.title == "Edited while locked"


async def test_a_write_that_waits_past_the_write_timeout_fails_retryably_and_writes_nothing(
    tmp_path: Path, holder: LockHolder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "SQLITE_BUSY_TIMEOUT_MS", 20)
    async with await Library.open(_settings(tmp_path, sqlite_write_timeout_s=0.2)) as library:
        await library.seed_synthetic(1, seed=2)
        track = (await library.list()).items[0]
        await holder.lock()
        with pytest.raises(DatabaseFailed) as info:
            await library.update_tags(track.id, {"title": "Never written"})
        await holder.release()
        assert info.value.code is ErrorCode.DATABASE_FAILED
        assert info.value.details["retryable"] is True
        assert "SQLITE_WRITE_TIMEOUT_S" in info.value.message
        assert (await library.get(track.id)).tags.title == track.tags.title
        # the connection is fine afterwards: the next write goes through
        assert (await library.update_tags(track.id, {"title": "Later"})).tags.title == "Later"


@pytest.mark.parametrize("shape", ["sqlite", "postgresql"])
async def test_a_long_seed_lets_another_library_write_between_its_transactions(
    tmp_path: Path, shape: str, request: pytest.FixtureRequest, busy_log: BusyLog
) -> None:
    from loist.library.synthetic import SEED_BATCH

    extra: dict[str, object] = {"sqlite_write_timeout_s": 2}  # were the seed one transaction, fail fast
    if shape == "postgresql":
        extra["database_url"] = request.getfixturevalue("pg_url")
    settings = _settings(tmp_path, **extra)
    n = 3 * SEED_BATCH
    async with await Library.open(settings, migrate=True) as seeder, await Library.open(settings) as other:
        await seeder.catalog.wipe()
        await seeder.seed_synthetic(1, seed=3)
        target = (await other.list()).items[0]
        seen: list[tuple[int, int, str]] = []

        async def between_batches(stage: str, done: int, total: int) -> None:
            if seen:
                return
            # the seed is paused between two of its transactions: another library writes now
            edited = await other.update_tags(target.id, {"title": f"edited after {done}"})
            seen.append((done, await other.catalog.count(), edited.tags.title or ""))

        added = await seeder.seed_synthetic(n, seed=4, progress=between_batches)

    assert added == n
    done, visible, title = seen[0]
    assert done == SEED_BATCH < n  # the first transaction, long before the seed's end
    assert visible == 1 + SEED_BATCH  # committed: the other library sees exactly that batch
    assert title == f"edited after {SEED_BATCH}"
    assert busy_log.count == 0  # and it never found the lock taken


async def test_writers_of_one_process_take_their_turns_in_arrival_order(
    library: Library, holder: LockHolder, busy_log: BusyLog
) -> None:
    await library.seed_synthetic(1, seed=5)
    track = (await library.list()).items[0]
    await holder.lock()
    writes = [
        asyncio.create_task(library.catalog.update_tags(track.id, track.tags.model_copy(update={"title": f"#{i}"})))
        for i in range(1, 9)
    ]
    # the first in line finds the lock taken (5 times, then the test lets go); the rest queue
    waited = asyncio.create_task(busy_log.waited.wait())
    await asyncio.wait({waited, *writes}, return_when=asyncio.FIRST_COMPLETED)
    assert waited.done() and not any(write.done() for write in writes)
    await holder.release()
    titles = [(await write).tags.title for write in writes]  # type: ignore[union-attr]
    assert titles == [f"#{i}" for i in range(1, 9)]
    assert (await library.get(track.id)).tags.title == "#8"  # committed in the order they came
