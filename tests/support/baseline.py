"""The catalog schema made both ways (the migration history replayed, the baseline), dumped to compare.

Also the generator of ``src/loist/catalog/migrations/baseline/*.sql``:
``scripts/write-schema-baseline`` runs ``python -m tests.support.baseline``, which replays the
history on a new SQLite file and a new PostgreSQL database (``LOIST_TEST_PG_SERVER``) and writes
what they hold.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess  # nosec B404 - pg_dump with an argument list
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from loist.catalog import baseline, revisions
from loist.catalog.migrate import upgrade
from tests.support.pg import drop_pg_database, make_pg_database

REGENERATE = "scripts/write-schema-baseline"


def sqlite_dump(path: Path) -> dict[str, object]:
    """Everything of a SQLite file's schema two equal schemas share: every object of sqlite_master
    with its SQL (tables, FTS5 tables and their shadow tables, indexes, triggers, views), the rows of
    every table (the FTS5 configuration, the version stamp), and the header's user version."""
    with closing(sqlite3.connect(path)) as conn:
        objects = baseline.sqlite_schema(conn)
        rows = {
            name: sorted(conn.execute(f'SELECT * FROM "{name}"').fetchall(), key=repr)  # noqa: S608  # nosec B608
            for kind, name, _table, _sql in objects
            if kind == "table"
        }
        user_version = conn.execute("PRAGMA user_version").fetchone()
    return {"objects": objects, "rows": rows, "user_version": user_version}


def pg_dump_schema(url: str) -> str:
    """``pg_dump --schema-only`` of a database: tables, columns and types, defaults, constraints,
    indexes, statistics, functions, triggers, sequences, views, extensions."""
    done = subprocess.run(  # noqa: S603  # nosec B603
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges", f"--dbname={url}"],  # noqa: S607
        capture_output=True, text=True, timeout=120, check=True,
    )
    return done.stdout


def pg_version_rows(url: str) -> list[tuple[str, ...]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return [tuple(row) for row in conn.execute("SELECT version_num FROM alembic_version").fetchall()]


async def replayed_sqlite(path: Path) -> None:
    await upgrade(f"sqlite:///{path}", replay=True)


def write() -> None:
    """Replay the history on both engines and write the baselines (the generator)."""
    head = revisions.head()
    baseline.BASELINE_DIR.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "loist.db"
        asyncio.run(replayed_sqlite(db))
        with closing(sqlite3.connect(db)) as conn:
            script = baseline.sqlite_script(conn)
    baseline.path("sqlite").write_text(baseline.HEADER.format(revision=head) + "\n" + script, encoding="utf-8")
    url = make_pg_database()
    try:
        asyncio.run(upgrade(url, replay=True))
        script = baseline.pg_script(pg_dump_schema(url))
    finally:
        drop_pg_database(url)
    baseline.path("postgresql").write_text(baseline.HEADER.format(revision=head) + "\n" + script, encoding="utf-8")
    print(f"wrote {baseline.path('sqlite')} and {baseline.path('postgresql')} at revision {head}")  # noqa: T201


if __name__ == "__main__":
    sys.exit(write())
