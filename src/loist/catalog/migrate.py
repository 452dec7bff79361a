"""Run the catalog's Alembic history programmatically (no ``alembic.ini``).

Why this module exists rather than the ``alembic`` CLI:

- the script location is the package directory, so an installed wheel can migrate itself;
- a migration never runs without a database URL (:class:`ConfigInvalid` says which variable to set);
- several instances may start at once (Cloud Run scales out): on PostgreSQL the upgrade holds
  ``pg_advisory_lock(MIGRATION_LOCK_KEY)``, on a SQLite file an exclusive ``flock`` on
  ``<db>.migrate.lock``; the instances that wait then find the database at head and do nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loist.catalog.baseline import create_if_empty
from loist.catalog.engine import build_engine
from loist.catalog.errors import database_failed
from loist.errors import LoistError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Fixed key of the PostgreSQL advisory lock held while migrating ("loist" as bytes, a bigint).
MIGRATION_LOCK_KEY = 0x6C6F697374


def alembic_config() -> Config:
    """The Alembic config, built in code: the history ships inside the ``loist`` package."""
    from alembic.config import Config  # Alembic (and Mako) only when there is something to migrate

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def heads() -> list[str]:
    """The head revision(s) of the history (exactly one, a test makes sure)."""
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory.from_config(alembic_config()).get_heads())


async def upgrade(url: str | None, revision: str = "head", *, replay: bool = False) -> None:
    """Upgrade the database at ``url`` to ``revision``; a no-op when it is there already.

    An empty database upgraded to the head is created from the baseline (:mod:`loist.catalog.baseline`)
    unless ``replay``: then every migration runs, as for any other target revision."""
    await _with_engine(url, lambda engine: upgrade_engine(engine, revision, replay=replay))


async def downgrade(url: str | None, revision: str) -> None:
    """Downgrade the database at ``url`` to ``revision`` (``"base"`` removes every table)."""

    async def run(engine: AsyncEngine) -> None:
        from alembic import command

        await _run_command(engine, lambda cfg: command.downgrade(cfg, revision))

    await _with_engine(url, run)


async def current(url: str | None) -> str | None:
    """The revision the database is at (``None`` for an empty database)."""
    return await _with_engine(url, current_engine)


async def current_engine(engine: AsyncEngine) -> str | None:
    """The revision the database behind ``engine`` is at (``None`` for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def upgrade_engine(engine: AsyncEngine, revision: str = "head", *, replay: bool = False) -> None:
    """Upgrade through an existing engine (:meth:`Catalog.ensure_schema` uses its own); an empty
    database upgraded to the head is created from the baseline unless ``replay``."""

    def run(cfg: Config) -> None:
        from alembic import command

        command.upgrade(cfg, revision)

    await _run_command(engine, run, from_baseline=revision == "head" and not replay)


async def _with_engine(url: str | None, run):  # type: ignore[no-untyped-def]
    engine = build_engine(url, null_pool=True)
    try:
        return await run(engine)
    except LoistError:
        raise
    except (TimeoutError, SQLAlchemyError, OSError) as exc:
        raise database_failed(exc, engine.url, action="migration") from None
    finally:
        await engine.dispose()


async def _run_command(engine: AsyncEngine, run, *, from_baseline: bool = False) -> None:  # type: ignore[no-untyped-def]
    """Run an Alembic command on one connection, under the cross-process migration lock (with
    ``from_baseline``, an empty database is created from the baseline instead)."""
    try:
        async with _migration_lock(engine) as conn:
            if from_baseline and await create_if_empty(conn):
                return

            def in_sync(sync_conn: Connection) -> None:
                config = alembic_config()
                config.attributes["connection"] = sync_conn
                run(config)

            await conn.run_sync(in_sync)
            await conn.commit()
    except LoistError:
        raise
    except (TimeoutError, SQLAlchemyError, OSError, RuntimeError) as exc:
        raise database_failed(exc, engine.url, action="migration") from None


@contextlib.asynccontextmanager
async def _migration_lock(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            await conn.commit()  # the lock is session-level: it outlives this transaction
            try:
                yield conn
            finally:
                if conn.in_transaction():
                    await conn.rollback()
                await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                await conn.commit()
        return
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        lock_path = Path(database).with_name(Path(database).name + ".migrate.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await asyncio.to_thread(_flock, fd)
            async with engine.connect() as conn:
                yield conn
        finally:
            os.close(fd)  # closing releases the flock
        return
    async with engine.connect() as conn:
        yield conn


def _flock(fd: int) -> None:
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_EX)


__all__ = [
    "MIGRATION_LOCK_KEY",
    "alembic_config",
    "current",
    "current_engine",
    "downgrade",
    "heads",
    "upgrade",
    "upgrade_engine",
]
