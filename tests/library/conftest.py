"""Fixtures of the library tests: ``library`` runs each test against both engine shapes.

``sqlite-local`` is the embedded default; ``postgresql-gcs`` is the cloud shape (real PostgreSQL,
the google-cloud-storage client against gcp-storage-emulator).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loist.config import Settings
from loist.library.service import Library


def _settings(tmp_path: Path, shape: str, request: pytest.FixtureRequest) -> Settings:
    base = {"data_dir": tmp_path / "data", "allow_private_urls": True, "_env_file": None}
    if shape == "sqlite-local":
        return Settings(**base)
    pg_url = request.getfixturevalue("pg_url")
    bucket = request.getfixturevalue("gcs_bucket")
    return Settings(**base, database_url=pg_url, storage_backend="gcs", gcs_bucket_name=bucket)


@pytest.fixture(params=["sqlite-local", "postgresql-gcs"])
async def library(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Library]:
    settings = _settings(tmp_path, request.param, request)
    lib = await Library.open(settings, migrate=True)
    await lib.catalog.wipe()
    try:
        yield lib
    finally:
        await lib.close()
