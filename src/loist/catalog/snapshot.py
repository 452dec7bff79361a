"""Consistent copies of a catalog while it is in use, and their way back.

- SQLite: the online backup API (``sqlite3.Connection.backup``) copies the database in one read
  transaction; in WAL mode writers go on meanwhile, and the copy is the database as of one instant.
  The copy is a single file (its journal mode is set back to ``DELETE``).
- PostgreSQL: ``pg_dump --format=custom`` (one repeatable-read snapshot of the whole database) and
  ``pg_restore``. ``pg_dump`` must be at least as new as the server (Debian's ``postgresql-client``
  matches the PostgreSQL 15 the deployments run); an older one is refused here with what to install.
  The password goes to the tools in ``PGPASSWORD``, never on a command line others can read.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess  # nosec B404 - runs pg_dump/pg_restore with argument lists, never a shell
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import make_url

from loist.errors import DatabaseFailed, InvalidArgument

TOOL_TIMEOUT_S = 6 * 3600  # a dump of a very large catalog; a hung tool still ends


def sqlite_file(url: str) -> Path:
    """The database file of a SQLite URL."""
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidArgument(f"not a SQLite database file: {url}")
    return Path(database)


def sqlite_copy(source: Path, target: Path) -> None:
    """Copy the SQLite database ``source`` into ``target`` (replaced) as of one instant, online."""
    if not source.is_file():
        raise DatabaseFailed(f"no SQLite catalog at {source}")
    try:
        with closing(sqlite3.connect(source, timeout=30)) as src, closing(sqlite3.connect(target)) as dst:
            src.backup(dst)  # all pages in one step: one read transaction, a consistent copy
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    except sqlite3.Error as exc:
        raise DatabaseFailed(f"copying the SQLite catalog {source} to {target} failed: {exc}") from None


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without its password, and the environment that carries the password."""
    parsed = make_url(url).set(drivername="postgresql")
    env = {**os.environ}
    if parsed.password:
        env["PGPASSWORD"] = str(parsed.password)
    return parsed.set(password=None).render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise DatabaseFailed(
            f"{name} is not installed: install PostgreSQL's client tools "
            "(Debian/Ubuntu: apt-get install postgresql-client), the same major version as the server or newer"
        )
    return found


def tool_major(name: str) -> int:
    """The major version of ``pg_dump``/``pg_restore`` ("pg_dump (PostgreSQL) 15.20" -> 15)."""
    done = subprocess.run([_tool(name), "--version"], capture_output=True, text=True, timeout=30, check=False)  # noqa: S603 # nosec B603
    match = re.search(r"(\d+)(?:\.\d+)?", done.stdout)
    if done.returncode != 0 or match is None:
        raise DatabaseFailed(f"cannot tell the version of {name}: {done.stdout.strip() or done.stderr.strip()}")
    return int(match.group(1))


def check_tool_version(name: str, server_version_num: int) -> None:
    """Refuse a tool older than the server (``server_version_num``: 150020 is PostgreSQL 15.20)."""
    server, tool = server_version_num // 10000, tool_major(name)
    if tool < server:
        raise DatabaseFailed(
            f"{name} {tool} cannot work with a PostgreSQL {server} server: install postgresql-client-{server} "
            f"or newer (Debian/Ubuntu: apt-get install postgresql-client-{server}, from the PGDG repository if needed)"
        )


def _run(name: str, args: list[str], url: str) -> None:
    target, env = _libpq(url)
    command = [_tool(name), *args, f"--dbname={target}"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TOOL_TIMEOUT_S, check=False)  # noqa: S603 # nosec B603
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-3:]
        raise DatabaseFailed(f"{name} failed (exit {done.returncode}): {' | '.join(detail)}")


def pg_dump(url: str, target: Path, *, snapshot: str | None = None) -> None:
    """Dump the PostgreSQL catalog at ``url`` into ``target`` (custom format: one consistent snapshot;
    ``snapshot``: an exported one, ``pg_export_snapshot()``, so a caller reads exactly what is dumped)."""
    args = ["--format=custom", "--no-owner", "--no-privileges", f"--file={target}"]
    if snapshot:
        args.append(f"--snapshot={snapshot}")
    _run("pg_dump", args, url)


def pg_restore(url: str, source: Path) -> None:
    """Load a dump into the (empty) database at ``url``, in one transaction."""
    _run("pg_restore", ["--no-owner", "--no-privileges", "--clean", "--if-exists", "--single-transaction",
                        "--exit-on-error", str(source)], url)
