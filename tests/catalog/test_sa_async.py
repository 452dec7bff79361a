"""``loist.catalog.sa_async``: SQLAlchemy's asyncio engine without its ORM, the ORM still there on demand."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, json, sys
import loist.catalog
from sqlalchemy.ext.asyncio import create_async_engine
light = "sqlalchemy.orm" not in sys.modules

async def main():
    engine = create_async_engine("sqlite+aiosqlite://")
    async with engine.connect() as conn:
        value = (await conn.exec_driver_sql("SELECT 41 + 1")).scalar()
    await engine.dispose()
    return value

value = asyncio.run(main())
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # the rest, on demand
import sqlalchemy.ext.asyncio as package
print(json.dumps([light, value, AsyncSession.__module__, "sqlalchemy.orm" in sys.modules,
                  package.AsyncEngine is sys.modules["sqlalchemy.ext.asyncio.engine"].AsyncEngine]))
"""


def test_the_engine_works_without_the_orm_and_the_orm_loads_on_demand() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [True, 42, "sqlalchemy.ext.asyncio.session", True, True]


def test_the_package_init_does_only_what_install_repeats() -> None:
    """Guard for SQLAlchemy upgrades: besides importing names, the asyncio package's ``__init__`` only
    initialises the greenlet bridge (which ``install`` does too). Anything new there: read it and
    decide whether ``install`` must repeat it."""
    spec = importlib.util.find_spec("sqlalchemy.ext.asyncio")
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    others = [ast.unparse(node) for node in tree.body if not isinstance(node, ast.ImportFrom)]
    assert others == ["concurrency._concurrency_shim._initialize()", "del concurrency"]
