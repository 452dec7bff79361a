"""The Alembic history: one head, numbered files, idempotent, reversible, safe to run concurrently."""

from __future__ import annotations

import ast
import asyncio
import re
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from loist.catalog import Catalog
from loist.catalog.engine import build_engine
from loist.catalog.migrate import MIGRATIONS_DIR, current, downgrade, heads, upgrade
from loist.catalog.schema import metadata
from loist.errors import ConfigInvalid
from tests.support.pg import sqlite_catalog_url, table_names

VERSIONS = MIGRATIONS_DIR / "versions"
CATALOG_TABLES = {"tracks", "track_genres"}


def _revision_files() -> list[Path]:
    return sorted(p for p in VERSIONS.glob("*.py") if p.name != "__init__.py")


def _module_constants(path: Path) -> dict[str, object]:
    tree = ast.parse(path.read_text())
    found: dict[str, object] = {}
    for node in tree.body:
        target = node.target if isinstance(node, ast.AnnAssign) else None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        if isinstance(target, ast.Name) and target.id in ("revision", "down_revision") and node.value:
            found[target.id] = ast.literal_eval(node.value)
    return found


def test_history_has_exactly_one_head() -> None:
    assert len(heads()) == 1


def test_revision_files_are_numbered_uniquely_and_in_sequence() -> None:
    files = _revision_files()
    assert files, "no migrations found"
    numbers = []
    for path in files:
        match = re.fullmatch(r"(\d{4})_[a-z0-9_]+\.py", path.name)
        assert match, f"{path.name}: migration files are named NNNN_description.py"
        numbers.append(match.group(1))
        constants = _module_constants(path)
        assert constants.get("revision") == match.group(1), f"{path.name}: revision id must equal its number"
    assert len(numbers) == len(set(numbers)), f"two migration files share a number: {numbers}"
    assert numbers == [f"{n:04d}" for n in range(1, len(numbers) + 1)], "numbers must run 0001, 0002, ..."
    for previous, path in zip([None, *numbers], files, strict=False):
        assert _module_constants(path).get("down_revision") == previous, (
            f"{path.name}: revises the wrong file"
        )


@pytest.mark.parametrize("url", [None, "", "   "])
async def test_migrating_without_a_database_url_is_refused(url: str | None) -> None:
    with pytest.raises(ConfigInvalid) as info:
        await upgrade(url)
    assert "DATABASE_URL" in info.value.message


async def test_unsupported_url_scheme_is_refused() -> None:
    with pytest.raises(ConfigInvalid):
        await upgrade("mysql://root@localhost/x")


async def _upgrade_twice_downgrade_upgrade(url: str) -> None:
    head = heads()[0]
    assert await current(url) is None
    await upgrade(url)
    assert await current(url) == head
    assert CATALOG_TABLES <= await table_names(url)
    await upgrade(url)  # a no-op
    assert await current(url) == head
    await downgrade(url, "base")
    assert await current(url) is None
    assert not (CATALOG_TABLES & await table_names(url))
    await upgrade(url)
    assert await current(url) == head
    async with Catalog.from_url(url) as catalog:  # and the result works
        await catalog.ping()
        assert await catalog.count() == 0


async def test_sqlite_upgrade_twice_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    await _upgrade_twice_downgrade_upgrade(f"sqlite:///{tmp_path}/new/dir/loist.db")


@pytest.mark.postgres
async def test_postgresql_upgrade_twice_downgrade_and_upgrade_again(fresh_pg_url: str) -> None:
    await _upgrade_twice_downgrade_upgrade(fresh_pg_url)


async def test_upgrade_adopts_tables_that_lost_their_version_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/loist.db"
    await upgrade(url)
    engine = build_engine(url, null_pool=True)
    async with engine.begin() as conn:
        await conn.execute(sa.text("DELETE FROM alembic_version"))
    await engine.dispose()
    await upgrade(url)  # migrations check before they create
    assert await current(url) == heads()[0]


async def test_ensure_schema_creates_a_usable_catalog_in_a_new_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh/sub/loist.db"
    async with Catalog.from_url(url) as catalog:
        await catalog.ensure_schema()
        await catalog.ensure_schema()
        assert await catalog.count() == 0
    assert await current(url) == heads()[0]


def _schema_diffs(sync_conn: sa.Connection) -> list[object]:
    context = MigrationContext.configure(sync_conn, opts={"compare_type": True})
    return compare_metadata(context, metadata)


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection of expression-based index")
@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_migrated_database_matches_schema_module(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sqlite_catalog_url(tmp_path) if dialect == "sqlite" else request.getfixturevalue("fresh_pg_url")
    await upgrade(url)
    engine = build_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            diffs = await conn.run_sync(_schema_diffs)
    finally:
        await engine.dispose()
    # schema.py must describe nothing the migrations do not create, with the same types. Objects the
    # migrations create beyond it (the dialect-specific partial index on FAILED locations, the search
    # engine's FTS tables, vectors and sort indexes) show up as "remove_*" and are allowed.
    assert [diff for diff in _flatten(diffs) if not diff[0].startswith("remove_")] == []


def _flatten(diffs: list[object]) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for diff in diffs:
        if isinstance(diff, list):  # column modifications come grouped
            out.extend(d for d in diff if isinstance(d, tuple))
        elif isinstance(diff, tuple):
            out.append(diff)
    return out


# Each instance imports everything, says "ready", and waits for "go", so the four upgrades really
# start together (without the advisory lock this fails with a duplicate-key error from pg_type).
INSTANCE = """
import asyncio, sys
from loist.catalog.migrate import upgrade
print("ready", flush=True)
sys.stdin.readline()
asyncio.run(upgrade(sys.argv[1]))
"""


@pytest.mark.postgres
def test_concurrent_upgrades_from_separate_processes_all_succeed(fresh_pg_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", INSTANCE, fresh_pg_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for proc in procs:  # barrier: every instance is up
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outcomes = [proc.communicate(timeout=120) for proc in procs]
    codes = [proc.returncode for proc in procs]
    assert codes == [0, 0, 0, 0], [err[-2000:] for _, err in outcomes]
    with psycopg.connect(fresh_pg_url) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename = 'tracks'"
        ).fetchone()
    assert versions == [(heads()[0],)]
    assert tables == (1,)


async def test_concurrent_upgrades_of_one_sqlite_file_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/loist.db"
    await asyncio.gather(*(upgrade(url) for _ in range(4)))
    assert await current(url) == heads()[0]


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_check_schema_refuses_a_database_behind_head(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from loist.errors import DatabaseFailed

    url = sqlite_catalog_url(tmp_path) if dialect == "sqlite" else request.getfixturevalue("fresh_pg_url")
    async with Catalog.from_url(url) as catalog:
        with pytest.raises(DatabaseFailed) as info:
            await catalog.check_schema()
        assert "loist db upgrade" in info.value.message
        assert info.value.details["current"] is None
        await upgrade(url, "0001")
        if len(_revision_files()) > 1:
            with pytest.raises(DatabaseFailed) as info:
                await catalog.check_schema()
            assert info.value.details["current"] == "0001"
        await catalog.ensure_schema()
        await catalog.check_schema()
