"""A new catalog is created from the baseline (``loist.catalog.baseline``), and what that creates is
exactly what replaying the migration history creates, on both engines; Alembic takes it from there."""

from __future__ import annotations

from pathlib import Path

import pytest

from loist.catalog import Catalog, baseline, revisions
from loist.catalog.engine import build_engine
from loist.catalog.migrate import current, downgrade, heads, upgrade
from loist.errors import DatabaseFailed
from tests.support.baseline import REGENERATE, pg_dump_schema, pg_version_rows, sqlite_dump
from tests.support.pg import drop_pg_database, make_pg_database, table_names

FIX = (
    "the baseline no longer creates what the migrations create (a migration was added or changed, or "
    f"code it runs): run `{REGENERATE}` and commit src/loist/catalog/migrations/baseline/*.sql"
)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_baseline_is_at_the_head_of_the_history(dialect: str) -> None:
    found = baseline.load(dialect)
    assert found is not None, FIX
    assert found[0] == heads()[0] == revisions.head(), FIX


async def test_sqlite_baseline_creates_what_the_history_creates(tmp_path: Path) -> None:
    replayed, created = tmp_path / "replayed.db", tmp_path / "created" / "loist.db"
    await upgrade(f"sqlite:///{replayed}", replay=True)
    await upgrade(f"sqlite:///{created}")
    replayed_dump, created_dump = sqlite_dump(replayed), sqlite_dump(created)
    assert created_dump["objects"] == replayed_dump["objects"], FIX
    assert created_dump == replayed_dump, FIX  # the FTS5 configuration, the version stamp
    assert created_dump["rows"]["alembic_version"] == [(heads()[0],)]


@pytest.mark.postgres
async def test_postgresql_baseline_creates_what_the_history_creates(fresh_pg_url: str) -> None:
    replayed = make_pg_database()
    try:
        await upgrade(replayed, replay=True)
        await upgrade(fresh_pg_url)
        assert _comparable(pg_dump_schema(fresh_pg_url)) == _comparable(pg_dump_schema(replayed)), FIX
        assert pg_version_rows(fresh_pg_url) == pg_version_rows(replayed) == [(heads()[0],)]
    finally:
        drop_pg_database(replayed)


def _comparable(dump: str) -> str:
    return "\n".join(line for line in dump.splitlines() if not line.startswith("\\"))  # a random key


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_the_baseline_runs_in_one_transaction(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A baseline whose last statement fails leaves the database as it was: no table, no stamp."""
    url = f"sqlite:///{tmp_path}/loist.db" if dialect == "sqlite" else request.getfixturevalue("fresh_pg_url")
    script = baseline.usable(dialect)
    assert script is not None
    monkeypatch.setattr(baseline, "usable", lambda _dialect: script + "\nCREATE TABLE tracks (id integer);\n")
    with pytest.raises(DatabaseFailed, match="already exists"):
        await upgrade(url)
    assert await table_names(url) == set()
    monkeypatch.undo()
    await upgrade(url)
    assert await current(url) == heads()[0]


async def test_a_database_with_tables_is_left_to_the_history(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/loist.db"
    engine = build_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql("CREATE TABLE mine (x integer)")
            await conn.commit()
            assert await baseline.create_if_empty(conn) is False
            await conn.exec_driver_sql("DROP TABLE mine")
            await conn.commit()
            assert await baseline.create_if_empty(conn) is True
            assert await baseline.create_if_empty(conn) is False  # now it has the catalog's tables
    finally:
        await engine.dispose()
    assert await current(url) == heads()[0]


def test_a_baseline_behind_the_history_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baseline, "load", lambda dialect: ("0001", "-- an old baseline\n"))
    assert baseline.usable("sqlite") is None
    assert baseline.usable("postgresql") is None


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_later_migrations_apply_to_a_catalog_created_from_the_baseline(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Stamped at a real revision: Alembic downgrades it and upgrades it again like any other, and
    what results is still the history's schema."""
    url = f"sqlite:///{tmp_path}/loist.db" if dialect == "sqlite" else request.getfixturevalue("fresh_pg_url")
    await upgrade(url)
    before = _dump(dialect, url, tmp_path)
    await downgrade(url, "0006")
    assert await current(url) == "0006"
    await upgrade(url)  # not empty: 0007, 0008, 0009 run
    assert await current(url) == heads()[0]
    assert _dump(dialect, url, tmp_path) == before
    async with Catalog.from_url(url) as catalog:
        await catalog.ping()
        assert await catalog.count() == 0


def _dump(dialect: str, url: str, tmp_path: Path) -> object:
    if dialect == "sqlite":
        dump = sqlite_dump(tmp_path / "loist.db")
        return dump["objects"]
    return _comparable(pg_dump_schema(url))
