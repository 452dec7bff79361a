"""A hung storage cannot take the server down with it: stream requests fill only the storage pool.

The storage is hung for real: the google client talks (``STORAGE_EMULATOR_HOST``) to a loopback
listener that accepts connections and never answers. Stream requests then hang in storage threads
until their request timeout; with ``STORAGE_THREADS=2`` two of them saturate the pool. Meanwhile
``/health/ready`` must still answer (503, storage failing: its probe has its own thread and a hard
timeout) and the embed page must still render (it reads only the catalog). The app runs in-process
with its lifespan, through httpx's ASGI transport; the catalog is a real SQLite database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loist.library.service import Library
from loist.library.synthetic import SYNTHETIC_BLOB_KEY, generate_tracks
from tests.support.blackhole import Blackhole
from tests.web.conftest import app_client, make_settings

pytestmark = pytest.mark.asyncio(loop_scope="function")


async def test_health_and_pages_answer_while_hung_streams_fill_the_storage_pool(
    blackhole: Blackhole, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", blackhole.url)
    settings = make_settings(
        tmp_path,
        storage_backend="gcs",
        gcs_bucket_name="hung-bucket",
        storage_threads=2,
        gcs_timeout_s=60,  # the stream reads stay hung until the blackhole closes
        gcs_read_deadline_s=0,
        gcs_breaker_failures=0,  # this test is about the pool, not the breaker
        health_timeout_s=0.5,
    )
    lib = await Library.open(settings)
    [(track, _)] = await lib.catalog.add_many(list(generate_tracks(1, blob_key=SYNTHETIC_BLOB_KEY)))
    try:
        async with app_client(settings, lib) as client:
            streams = [asyncio.create_task(client.get(f"/audio/{track.id}/stream")) for _ in range(2)]
            await asyncio.to_thread(blackhole.wait_for, 2)  # both stats are hanging on the storage
            assert lib.storage_pool.busy == lib.storage_pool.size == 2  # the pool is full

            ready = await client.get("/health/ready")
            assert ready.status_code == 503
            storage = ready.json()["checks"]["storage"]
            assert storage["ok"] is False and storage["code"] == "STORAGE_FAILED"  # the public body: a code
            report = await lib.health()  # the full report (MCP health_check, the server log) says why
            assert "did not answer within 0.5 s" in report["storage"]["error"]["message"]
            assert ready.json()["checks"]["database"]["ok"] is True
            assert blackhole.connections == 3  # the probe reached the storage: it did not wait for a slot

            again = await client.get("/health/ready")
            assert again.status_code == 503
            assert blackhole.connections == 3  # the hung probe is joined, not repeated

            page = await client.get(f"/embed/{track.id}")
            assert page.status_code == 200 and "<audio" in page.text
            assert (await client.get("/health/live")).status_code == 200
            assert lib.storage_pool.busy == 2 and not any(s.done() for s in streams)  # still hung

            blackhole.close()  # the storage "comes back" as a reset: the hung reads fail now
            answers = await asyncio.gather(*streams)
        assert [(r.status_code, r.json()["error"]["code"]) for r in answers] == [(503, "STORAGE_FAILED")] * 2
        assert lib.storage_pool.busy == 0
    finally:
        await lib.close()
