"""Liveness and readiness, including the 503s a broken dependency must produce, and app lifecycle."""

from __future__ import annotations

import socket

import httpx
import pytest

from loist.catalog import Catalog
from loist.config import Settings
from loist.storage import open_blob_store
from tests.web.conftest import WebWorld, app_client, make_settings

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
    gcs_emulator: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = make_settings(tmp_path_factory.mktemp("no-bucket"), storage_backend="gcs",
                             gcs_bucket_name="no-such-bucket-for-loist")
    async with app_client(settings) as c:  # the lifespan opens (and closes) the library itself
        r = await c.get("/health/ready")
        live = await c.get("/health/live")
    assert r.status_code == 503
    body = r.json()
    assert body["status"] == "unavailable"
    assert "storage" in body["reason"] and "no-such-bucket-for-loist" in body["reason"]
    assert body["checks"]["database"]["ok"] is True
    assert live.status_code == 200  # the process is up; it is just not ready


async def test_ready_is_503_when_the_database_is_unreachable(tmp_path_factory: pytest.TempPathFactory) -> None:
    from loist.library.service import Library

    settings: Settings = make_settings(tmp_path_factory.mktemp("no-db"))
    catalog = Catalog.from_url(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/loist")
    library = Library(settings, catalog, open_blob_store(settings))
    try:
        async with app_client(settings, library) as c:
            r = await c.get("/health/ready")
    finally:
        await library.close()
    assert r.status_code == 503
    body = r.json()
    assert body["reason"].startswith("database:")
    assert body["checks"]["storage"]["ok"] is True


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
