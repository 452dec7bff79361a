"""The catalog engine: tracks in SQLite or PostgreSQL (see :class:`Catalog`)."""

from loist.catalog import sa_async

sa_async.install()  # before any catalog module imports SQLAlchemy's asyncio package: no ORM

from loist.catalog.store import Catalog  # noqa: E402

__all__ = ["Catalog"]
