"""Liveness and readiness, including the 503s a broken dependency must produce, and app lifecycle."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from loist.catalog import Catalog
from loist.config import Settings
from loist.storage import open_blob_store
from tests.web.conftest import BASE_URL, WebWorld, app_client, make_settings

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.asyncio(loop_scope="module")


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_live(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/live")
    assert r.status_code == 200 and r.json() == {"status": "ok"}
    assert r.headers["cache-control"] == "no-store"


async def test_ready_reports_both_dependencies(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True and body["checks"]["database"]["dialect"] == "sqlite"
    assert body["checks"]["storage"]["ok"] is True and body["checks"]["storage"]["backend"] == "local"


async def test_ready_is_503_when_the_bucket_is_missing(
    gcs_emulator: str, tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path_factory.mktemp("no-bucket"), storage_backend="gcs",
                             gcs_bucket_name="no-such-bucket-for-loist")
    async with app_client(settings) as c:  # the lifespan opens (and closes) the library itself
        with caplog.at_level(logging.WARNING, logger="loist.web.health"):
            r = await c.get("/health/ready")
        live = await c.get("/health/live")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable"
    assert body["reason"] == "storage: STORAGE_FAILED"
    storage = body["checks"]["storage"]
    assert storage == {"ok": False, "backend": "gcs", "code": "STORAGE_FAILED", "latency_ms": storage["latency_ms"]}
    assert body["checks"]["database"]["ok"] is True
    assert "no-such-bucket-for-loist" not in r.text  # the deployment's names stay in the log
    assert "no-such-bucket-for-loist" in caplog.text
    assert live.status_code == 200  # the process is up; it is just not ready


async def test_ready_is_503_when_the_database_is_unreachable(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from loist.library.service import Library

    settings: Settings = make_settings(tmp_path_factory.mktemp("no-db"))
    port = closed_port()
    catalog = Catalog.from_url(f"postgresql+asyncpg://loist_reader@127.0.0.1:{port}/music_prod")
    library = Library(settings, catalog, open_blob_store(settings))
    try:
        async with app_client(settings, library) as c:
            with caplog.at_level(logging.WARNING):
                r = await c.get("/health/ready")
                page = await c.get(f"/embed/{uuid.uuid4()}")
                stream = await c.get(f"/audio/{uuid.uuid4()}/stream")
                oembed = await c.get("/oembed", params={"url": f"{BASE_URL}/embed/{uuid.uuid4()}"})
    finally:
        await library.close()
    assert r.status_code == 503
    body = r.json()
    assert body["reason"] == "database: DATABASE_FAILED"
    assert body["checks"]["storage"]["ok"] is True
    for response in (r, page, stream, oembed):  # every public 503: a code and a generic message
        assert response.status_code == 503, response.text
        for secret in ("loist_reader", "music_prod", str(port), "127.0.0.1", "asyncpg", "://"):
            assert secret not in response.text, (response.request.url, secret)
    assert stream.json()["error"] == {"code": "DATABASE_FAILED",
                                      "message": "the music catalog is unavailable right now; try again later"}
    assert "try again later" in page.text  # the embed page's HTML error
    assert f"127.0.0.1:{port}/music_prod" in caplog.text  # ... and the operator's log has the details


async def test_ready_shows_no_folder_when_local_storage_is_missing(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path_factory.mktemp("no-blob-dir"))
    async with app_client(settings) as c:
        ok = await c.get("/health/ready")
        shutil.rmtree(settings.blob_dir)
        with caplog.at_level(logging.WARNING, logger="loist.web.health"):
            gone = await c.get("/health/ready")
    assert ok.status_code == 200
    assert str(settings.data_dir) not in ok.text and "free_bytes" not in ok.text
    assert gone.status_code == 503 and gone.json()["checks"]["storage"]["code"] == "STORAGE_FAILED"
    assert str(settings.blob_dir) not in gone.text
    assert str(settings.blob_dir) in caplog.text


async def test_ready_tells_a_full_disk_from_a_healthy_one(
    tmp_path_factory: pytest.TempPathFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """The reading is the real free space of the disk under the blob folder; "full" here is a
    threshold above it (a real full filesystem is the next test, where the machine allows a mount)."""
    data_dir = tmp_path_factory.mktemp("disk")
    free_mb = shutil.disk_usage(data_dir).free / 2**20
    async with app_client(make_settings(data_dir, storage_min_free_mb=0)) as c:
        healthy = await c.get("/health/ready")
    async with app_client(make_settings(data_dir, storage_min_free_mb=free_mb * 4 + 1024)) as c:
        with caplog.at_level(logging.WARNING, logger="loist.web.health"):
            full = await c.get("/health/ready")
    assert healthy.status_code == 200 and healthy.json()["checks"]["storage"]["ok"] is True
    assert full.status_code == 503
    assert full.json()["checks"]["storage"] == {
        "ok": False, "backend": "local", "latency_ms": full.json()["checks"]["storage"]["latency_ms"],
        "code": "STORAGE_FAILED", "reason": "LOW_DISK_SPACE"}
    assert full.json()["reason"] == "storage: STORAGE_FAILED (LOW_DISK_SPACE)"
    assert "STORAGE_MIN_FREE_MB" in caplog.text and "MB free" in caplog.text


FULL_DISK_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from tests.web.conftest import app_client, make_settings

mount, data_dir = Path(sys.argv[1]), Path(sys.argv[2])

async def ready():
    settings = make_settings(data_dir, storage_path=mount, storage_min_free_mb=1)
    async with app_client(settings) as c:
        r = await c.get("/health/ready")
        return r.status_code, r.json()

before = asyncio.run(ready())
with open(mount / "filler", "wb") as f:  # fill the filesystem until the kernel says it is full
    try:
        while True:
            f.write(b"x" * 65536)
            f.flush()
    except OSError as exc:
        assert exc.errno == 28, exc  # ENOSPC
print(json.dumps({"before": before, "after": asyncio.run(ready())}))
"""


async def test_ready_on_a_really_full_filesystem(tmp_path: Path) -> None:
    """A 4 MiB tmpfs, mounted in a private mount namespace (``unshare``), filled to ENOSPC."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare is not installed")
    mount = tmp_path / "tiny"
    mount.mkdir()
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_SCRIPT)
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=4m tmpfs {mount}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"this machine does not allow a private tmpfs mount: {probe.stderr.strip()}")
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$2" "$3" "$1" "$4"', "sh",
         str(mount), sys.executable, str(script), str(tmp_path / "data")],
        capture_output=True, text=True, cwd=ROOT, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    (status_before, body_before), (status_after, body_after) = result["before"], result["after"]
    assert status_before == 200 and body_before["checks"]["storage"]["ok"] is True
    assert status_after == 503
    assert body_after["checks"]["storage"]["reason"] == "LOW_DISK_SPACE"


async def test_lifespan_opens_and_closes_its_own_library(tmp_path_factory: pytest.TempPathFactory) -> None:
    from loist.web.app import create_app
    from tests.web.conftest import running

    settings = make_settings(tmp_path_factory.mktemp("own-lib"))
    app = create_app(settings)
    ctx = app.state.web
    with pytest.raises(RuntimeError, match="not open"):
        _ = ctx.library  # nothing is opened by building the app
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as c:
            assert (await c.get("/health/ready")).status_code == 200
    with pytest.raises(RuntimeError, match="not open"):
        _ = ctx.library  # closed again on shutdown


async def test_two_apps_are_independent(world: WebWorld) -> None:
    from loist.web.app import create_app

    a, b = create_app(world.settings, world.library), create_app(world.settings, world.library)
    assert a is not b and a.state.web is not b.state.web


async def test_unknown_route_and_method_use_the_error_format(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = await client.post(f"/audio/{world.plain.id}/stream")
    assert r.status_code == 405 and "code" in r.json()["error"]
