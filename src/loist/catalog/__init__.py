"""The catalog engine: tracks in SQLite or PostgreSQL (see :class:`Catalog`)."""

from loist.catalog.store import Catalog

__all__ = ["Catalog"]
