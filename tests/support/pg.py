"""Shared test fixtures (pg): real PostgreSQL databases, and a ``catalog`` on both dialects.

- ``pg_url`` (session): a fresh, uniquely named database (``loist_test_<uuid8>``, one per xdist
  worker) on the local server; yields ``postgresql://postgres@127.0.0.1:5432/<db>``; dropped at the
  end. When the server is unreachable the test is skipped locally but FAILS when ``CI`` is set: a
  CI run never passes by skipping the database.
- ``pg_migrated_url`` (session): ``pg_url`` upgraded to the migration head once.
- ``fresh_pg_url`` (function): a new empty database for migration tests; dropped afterwards.
- ``catalog_url`` (function, parametrized ``sqlite`` / ``postgresql``): a migrated, empty database.
- ``catalog`` (function, over ``catalog_url``): a migrated, EMPTY
  :class:`~loist.catalog.Catalog`. SQLite copies a migrated template file into ``tmp_path``;
  PostgreSQL reuses the session database and wipes it, so each test costs milliseconds.
- ``sqlite_catalog_url(tmp_path)`` / ``make_pg_database()`` helpers for tests that need more.
- ``rejecting_title(catalog, title)``: a real database error on demand, on either dialect (below);
  ``refusing_failure_cleanup(catalog)``: the same for deleting FAILED rows.

``LOIST_TEST_PG_SERVER`` overrides the server (default ``postgresql://postgres@127.0.0.1:5432``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from psycopg import sql

from loist.catalog import Catalog
from loist.catalog.engine import build_engine
from loist.catalog.migrate import upgrade

PG_SERVER = os.environ.get("LOIST_TEST_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
CONNECT_TIMEOUT_S = 5


def _admin() -> psycopg.Connection:
    return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)


def _unavailable(reason: str) -> None:
    message = f"PostgreSQL at {PG_SERVER} is unreachable: {reason}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI is set: database tests never skip in CI)", pytrace=False)
    pytest.skip(message)


def make_pg_database() -> str:
    """Create an empty, uniquely named database; return its plain URL (drop it with drop_pg_database)."""
    name = f"loist_test_{uuid.uuid4().hex[:8]}"
    try:
        with _admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        _unavailable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return f"{PG_SERVER}/{name}"


def drop_pg_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with _admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    url = make_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture(scope="session")
def pg_migrated_url(pg_url: str) -> str:
    asyncio.run(upgrade(pg_url))
    return pg_url


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    url = make_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


async def table_names(url: str) -> set[str]:
    """The tables a catalog database holds (any engine), read through SQLAlchemy's inspector."""
    engine = build_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("catalog-template") / "loist.db"
    asyncio.run(upgrade(f"sqlite:///{path}"))
    return path


def sqlite_catalog_url(directory: Path, template: Path | None = None) -> str:
    """A SQLite URL in ``directory``; with ``template``, the file starts as a copy of it."""
    path = directory / "loist.db"
    if template is not None:
        shutil.copyfile(template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a migrated catalog database, per dialect (sync: migrating uses its own loop)."""
    if request.param == "sqlite":
        return sqlite_catalog_url(tmp_path, request.getfixturevalue("_sqlite_template"))
    return request.getfixturevalue("pg_migrated_url")


@pytest.fixture
async def catalog(catalog_url: str) -> AsyncIterator[Catalog]:
    cat = Catalog.from_url(catalog_url)
    if cat.dialect == "postgresql":
        await cat.wipe()  # the session database is shared by the tests of this worker
    try:
        yield cat
    finally:
        await cat.close()


REJECTED = "rejected by a test trigger"


@asynccontextmanager
async def rejecting_title(catalog: Catalog, title: str) -> AsyncIterator[None]:
    """While inside, the database itself refuses to insert a track titled ``title``.

    A ``BEFORE INSERT`` trigger on ``tracks`` raises (``RAISE(ABORT, ...)`` on SQLite, a PL/pgSQL
    ``RAISE EXCEPTION`` on PostgreSQL), so the statement fails inside the driver and the whole
    transaction carrying that row rolls back, as a constraint violation or a lost connection would:
    nothing in Loist is patched. The trigger is dropped on the way out.
    """
    if not title.replace(" ", "").isalnum():
        raise ValueError("the title is written into the trigger's SQL: letters, digits and spaces only")
    if catalog.dialect == "sqlite":
        create = [f"CREATE TRIGGER loist_test_reject BEFORE INSERT ON tracks WHEN NEW.title = '{title}' "
                  f"BEGIN SELECT RAISE(ABORT, '{REJECTED}'); END"]
        drop = ["DROP TRIGGER IF EXISTS loist_test_reject"]
    else:
        create = [
            "CREATE FUNCTION loist_test_reject() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.title = '{title}' THEN RAISE EXCEPTION '{REJECTED}'; END IF; RETURN NEW; END $$",
            "CREATE TRIGGER loist_test_reject BEFORE INSERT ON tracks FOR EACH ROW EXECUTE FUNCTION loist_test_reject()",
        ]
        drop = ["DROP TRIGGER IF EXISTS loist_test_reject ON tracks", "DROP FUNCTION IF EXISTS loist_test_reject()"]
    async with _installed(catalog, create, drop):
        yield


@asynccontextmanager
async def refusing_failure_cleanup(catalog: Catalog) -> AsyncIterator[None]:
    """While inside, the database itself refuses to delete a FAILED row: what a successful ingest
    does right after its commit, clearing its source's earlier failures. A ``BEFORE DELETE``
    trigger raises ``REJECTED`` (as a connection lost just after the commit would fail that
    statement); every other write goes through. Dropped on the way out.
    """
    if catalog.dialect == "sqlite":
        create = ["CREATE TRIGGER loist_test_refuse BEFORE DELETE ON tracks WHEN OLD.status = 'FAILED' "
                  f"BEGIN SELECT RAISE(ABORT, '{REJECTED}'); END"]
        drop = ["DROP TRIGGER IF EXISTS loist_test_refuse"]
    else:
        create = [
            "CREATE FUNCTION loist_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF OLD.status = 'FAILED' THEN RAISE EXCEPTION '{REJECTED}'; END IF; RETURN OLD; END $$",
            "CREATE TRIGGER loist_test_refuse BEFORE DELETE ON tracks FOR EACH ROW EXECUTE FUNCTION loist_test_refuse()",
        ]
        drop = ["DROP TRIGGER IF EXISTS loist_test_refuse ON tracks", "DROP FUNCTION IF EXISTS loist_test_refuse()"]
    async with _installed(catalog, create, drop):
        yield


@asynccontextmanager
async def _installed(catalog: Catalog, create: list[str], drop: list[str]) -> AsyncIterator[None]:
    async with catalog.engine.begin() as conn:
        for statement in create:
            await conn.exec_driver_sql(statement)
    try:
        yield
    finally:
        async with catalog.engine.begin() as conn:
            for statement in drop:
                await conn.exec_driver_sql(statement)
