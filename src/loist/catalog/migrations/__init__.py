"""Alembic migration history of the catalog (one history for SQLite and PostgreSQL).

Run it with :mod:`loist.catalog.migrate` (``loist db upgrade``); there is no ``alembic.ini``.
"""
