"""Is a database at the migration head? Answered without importing Alembic.

Every command on the embedded SQLite library, and every server start, asks it. Alembic (with the
Mako and Pygments it pulls in) costs about a third of a ``loist list`` when imported, and is only
needed when there is something to migrate: :func:`head` reads the ``revision`` and
``down_revision`` lines of the migration files, :func:`current` reads Alembic's own
``alembic_version`` table. :mod:`loist.catalog.migrate` stays the one place migrations run (and
its ``heads()`` the reference: a test keeps the two in step).
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

VERSIONS_DIR = Path(__file__).resolve().parent / "migrations" / "versions"
VERSION_TABLE = "alembic_version"  # Alembic's default, which migrate.py keeps
_LINE = re.compile(r"^(down_revision|revision)\s*(?::[^=]+)?=\s*(.+?)\s*$", re.M)


@functools.cache
def head() -> str | None:
    """The one head revision of the migration files, or None when it cannot be told without Alembic
    (several heads, a line this reader does not understand): the caller then asks Alembic."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in VERSIONS_DIR.glob("*.py"):
        found = dict((name, value) for name, value in _LINE.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            continue
        try:
            revision = ast.literal_eval(found["revision"])
            down = ast.literal_eval(found.get("down_revision", "None"))
        except (ValueError, SyntaxError):
            return None
        revisions.add(revision)
        parents.update(down if isinstance(down, tuple | list) else [down] if down else [])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def current(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None for an empty database or one with several heads)."""
    async with engine.connect() as conn:
        try:
            rows = (await conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}"))).scalars().all()  # noqa: S608  # nosec B608 - a constant
        except SQLAlchemyError:  # no such table: nothing migrated yet
            return None
    return rows[0] if len(rows) == 1 else None


async def at_head(engine: AsyncEngine) -> bool:
    """True when the database is known to be at the head; False means "ask Alembic"."""
    wanted = head()
    return wanted is not None and await current(engine) == wanted
