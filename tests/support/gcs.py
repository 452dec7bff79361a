"""Shared test fixtures (gcs): gcp-storage-emulator, in-process, on a free loopback port.

- ``gcs_emulator`` (session): starts the emulator in memory, sets ``STORAGE_EMULATOR_HOST`` for
  the session (restored afterwards) and yields its base URL. google-cloud-storage then talks to it
  with ``AnonymousCredentials``, so ``Settings(storage_backend="gcs", gcs_bucket_name=...)`` and
  ``open_blob_store`` work with nothing else configured.
- ``gcs_bucket`` (function): a fresh, uniquely named, empty bucket; yields its name.
- ``gcs_client()``: a client for the emulator, for tests that look behind the store's back.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


def gcs_client() -> storage.Client:
    """A client for the running emulator (needs ``gcs_emulator``: it reads STORAGE_EMULATOR_HOST)."""
    return storage.Client(project="test", credentials=AnonymousCredentials())


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[str]:
    from gcp_storage_emulator.server import create_server

    # The emulator logs every request (and a warning per string response) at INFO/WARNING.
    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)
    server = create_server("127.0.0.1", 0, in_memory=True)
    server.start()
    try:
        host, port = server._api._httpd.server_address[:2]  # bound port (we asked for port 0)
        url = f"http://{host}:{port}"
        previous = os.environ.get(EMULATOR_ENV)
        os.environ[EMULATOR_ENV] = url
        _stop_fork_server()
        try:
            yield url
        finally:
            if previous is None:
                os.environ.pop(EMULATOR_ENV, None)
            else:
                os.environ[EMULATOR_ENV] = previous
    finally:
        server.stop()


def _stop_fork_server() -> None:
    """Bulk-ingest workers fork from multiprocessing's fork server, which keeps the environment it
    started with: stop one a test started earlier, so the next pool's workers see the emulator."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()  # noqa: SLF001 - the stdlib's own test hook


@pytest.fixture
def gcs_bucket(gcs_emulator: str) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:20]}"
    client = gcs_client()
    client.create_bucket(name)
    yield name
    try:
        bucket = client.bucket(name)
        for blob in client.list_blobs(name):
            blob.delete()
        bucket.delete()
    except Exception:  # noqa: BLE001 - cleanup of an in-memory emulator; never fail a test for it
        pass
