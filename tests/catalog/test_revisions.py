"""``loist.catalog.revisions``: the head and a database's revision without Alembic, and what a
command on a current library therefore never imports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from loist.catalog import migrate, revisions
from loist.catalog.engine import build_engine


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert revisions.head() == migrate.heads()[0]


async def test_current_follows_the_database(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    engine = build_engine(url, null_pool=True)
    try:
        assert await revisions.current(engine) is None and not await revisions.at_head(engine)
        await migrate.upgrade(url, "0002")
        assert await revisions.current(engine) == "0002" == await migrate.current(url)
        await migrate.upgrade(url)
        assert await revisions.at_head(engine)
    finally:
        await engine.dispose()


async def test_current_on_postgresql(fresh_pg_url: str) -> None:
    engine = build_engine(fresh_pg_url, null_pool=True)
    try:
        assert await revisions.current(engine) is None  # no alembic_version table: nothing migrated
        await migrate.upgrade(fresh_pg_url)
        assert await revisions.at_head(engine)
    finally:
        await engine.dispose()


PROBE = """
import asyncio, json, sys
from loist.config import Settings
from loist.library.service import Library

async def main():
    library = await Library.open(Settings(data_dir=sys.argv[1], _env_file=None))
    await library.list()
    await library.close()

asyncio.run(main())
SKIPPED = ("alembic", "mako", "httpx", "mutagen", "PIL", "multiprocessing", "loist.library.pipeline",
           "sqlalchemy.orm", "sqlalchemy.dialects.postgresql", "loist.catalog.search", "limits")
print(json.dumps(sorted(m for m in SKIPPED if m in sys.modules)))
"""


def test_reading_a_library_loads_no_migration_or_ingest_code(tmp_path: Path) -> None:
    """A fresh library is created from the baseline and a current one is only read: neither the
    migration machinery nor the ingest engines are imported in either case, nor SQLAlchemy's ORM, its
    PostgreSQL dialect, the search code or the rate limiter (docs/architecture.md, "Start-up cost")."""
    def loaded() -> list[str]:
        done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "lib")], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    assert loaded() == []  # it created the new library from the baseline, without Alembic
    assert loaded() == []  # then only read it
    assert asyncio.run(migrate.current(f"sqlite:///{tmp_path / 'lib' / 'loist.db'}")) == migrate.heads()[0]
