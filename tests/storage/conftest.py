"""Fixtures for the storage tests: one ``blob_store`` fixture, parametrized over both backends."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loist.config import Settings
from loist.storage import BlobStore, open_blob_store

THREE_MB = 3 * 1024 * 1024 + 12_345  # deliberately not a multiple of any chunk or window size


def make_settings(**values: object) -> Settings:
    """Settings for a test: never read a developer's ``.env``."""
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture(params=["local", "gcs"])
def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    """A fresh, empty store: a folder, or a new bucket in the in-process GCS emulator."""
    if request.param == "local":
        return open_blob_store(make_settings(storage_backend="local", storage_path=tmp_path / "blobs"))
    bucket = request.getfixturevalue("gcs_bucket")
    return open_blob_store(make_settings(storage_backend="gcs", gcs_bucket_name=bucket))


@pytest.fixture(scope="session")
def three_mb_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    data = os.urandom(THREE_MB)
    path = tmp_path_factory.mktemp("blobdata") / "three-mb.bin"
    path.write_bytes(data)
    return path, data
