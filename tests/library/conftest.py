"""Fixtures of the library tests: ``library`` runs each test against both engine shapes.

``sqlite-local`` is the embedded default; ``postgresql-gcs`` is the cloud shape (real PostgreSQL,
the google-cloud-storage client against gcp-storage-emulator). ``any_library`` adds the two mixed
shapes (``sqlite-gcs``, ``postgresql-local``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loist.config import Settings
from loist.library.service import Library


def _settings(tmp_path: Path, shape: str, request: pytest.FixtureRequest) -> Settings:
    """Settings for an ``<engine>-<backend>`` shape: sqlite or postgresql, local or gcs."""
    engine, backend = shape.split("-")
    values: dict[str, object] = {"data_dir": tmp_path / "data", "allow_private_urls": True, "_env_file": None}
    if engine == "postgresql":
        values["database_url"] = request.getfixturevalue("pg_url")
    if backend == "gcs":
        values.update(storage_backend="gcs", gcs_bucket_name=request.getfixturevalue("gcs_bucket"))
    return Settings(**values)


async def _open(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Library]:
    lib = await Library.open(_settings(tmp_path, request.param, request), migrate=True)
    await lib.catalog.wipe()
    try:
        yield lib
    finally:
        await lib.close()


@pytest.fixture(params=["sqlite-local", "postgresql-gcs"])
async def library(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Library]:
    async for lib in _open(request, tmp_path):
        yield lib


@pytest.fixture(params=["sqlite-local", "sqlite-gcs", "postgresql-local", "postgresql-gcs"])
async def any_library(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Library]:
    """Every engine with every backend (the blob-lifetime rules involve both at once)."""
    async for lib in _open(request, tmp_path):
        yield lib
