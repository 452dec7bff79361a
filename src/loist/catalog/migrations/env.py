"""Alembic environment for the catalog.

:mod:`loist.catalog.migrate` opens the connection (and takes the PostgreSQL advisory lock) and
hands it over in ``config.attributes["connection"]``; this file only runs the migrations on it. A
run without that connection needs ``sqlalchemy.url`` in the config and refuses to guess one: a
migration must never run against a database nobody named.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from loist.catalog.schema import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_url(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline (--sql) migrations are not supported; run `loist db upgrade`")
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set DATABASE_URL and run `loist db upgrade`")
    asyncio.run(_run_with_url(url))


main()
