"""Every database failure leaves the catalog as DatabaseFailed / ConfigInvalid, never with a password."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from loist.catalog import Catalog
from loist.errors import ConfigInvalid, DatabaseFailed, ErrorCode
from tests.catalog.factories import make_track

SECRET = "s3cr3t-Pa55word"


def _closed_port() -> int:
    with socket.socket() as sock:  # bind then close: nothing listens there afterwards
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_unreachable_postgresql_is_database_failed_without_the_password() -> None:
    url = f"postgresql://loist:{SECRET}@127.0.0.1:{_closed_port()}/loist"
    async with Catalog.from_url(url) as catalog:
        assert catalog.dialect == "postgresql"
        for call in (catalog.ping(), catalog.get_by_sha256("0" * 64), catalog.add(make_track())):
            with pytest.raises(DatabaseFailed) as info:
                await call
            assert info.value.code is ErrorCode.DATABASE_FAILED
            assert SECRET not in str(info.value) and SECRET not in repr(info.value.to_dict())
            assert "127.0.0.1" in info.value.message


@pytest.mark.postgres
async def test_wrong_postgresql_password_is_database_failed_without_the_password(pg_url: str) -> None:
    # Trust auth accepts any password, so use a database that does not exist instead.
    url = pg_url.replace("postgres@", f"postgres:{SECRET}@").rsplit("/", 1)[0] + "/no_such_database_xyz"
    async with Catalog.from_url(url) as catalog:
        with pytest.raises(DatabaseFailed) as info:
            await catalog.ping()
    assert SECRET not in str(info.value)
    assert "no_such_database_xyz" in info.value.message


async def test_sqlite_file_that_is_not_a_database_is_database_failed(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite database, just bytes" * 100)
    async with Catalog.from_url(f"sqlite:///{path}") as catalog:
        with pytest.raises(DatabaseFailed) as info:
            await catalog.ping()
    assert "not a database" in info.value.message


async def test_unmigrated_database_is_database_failed(tmp_path: Path) -> None:
    async with Catalog.from_url(f"sqlite:///{tmp_path}/empty.db") as catalog:
        await catalog.ping()
        with pytest.raises(DatabaseFailed) as info:
            await catalog.count()
    assert "tracks" in info.value.message


@pytest.mark.parametrize("url", ["", "not a url", "mysql://root@localhost/x"])
def test_bad_urls_are_config_invalid(url: str) -> None:
    with pytest.raises(ConfigInvalid):
        Catalog.from_url(url)


async def test_sqlite_connections_use_wal_foreign_keys_and_busy_timeout(tmp_path: Path) -> None:
    import sqlalchemy as sa

    async with Catalog.from_url(f"sqlite:///{tmp_path}/x.db") as catalog:
        async with catalog.engine.connect() as conn:
            pragmas = {
                name: (await conn.execute(sa.text(f"PRAGMA {name}"))).scalar_one()
                for name in ("journal_mode", "foreign_keys", "busy_timeout")
            }
    assert pragmas["journal_mode"] == "wal"
    assert pragmas["foreign_keys"] == 1
    assert pragmas["busy_timeout"] >= 1000


@pytest.mark.postgres
async def test_a_postgresql_connection_lost_while_idle_is_replaced(fresh_pg_url: str) -> None:
    """The pool's pre-ping (one round trip, loist.catalog.engine) finds a connection the server
    closed while it sat in the pool, and a new one serves the next search and the next write."""
    import psycopg

    from loist.catalog.migrate import upgrade
    from loist.model import SearchRequest

    await upgrade(fresh_pg_url)
    async with Catalog.from_url(fresh_pg_url) as catalog:
        await catalog.add(make_track(1))
        assert (await catalog.search(SearchRequest(query=""))).total == 1
        with psycopg.connect(fresh_pg_url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert killed is not None and killed[0] >= 1  # the pooled connection was there, and is gone
        assert (await catalog.search(SearchRequest(query=""))).total == 1
        await catalog.add(make_track(2))
        assert await catalog.count() == 2
