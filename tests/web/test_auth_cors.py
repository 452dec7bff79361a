"""Bearer auth on /mcp (and only there), and CORS scoped to the media and oEmbed routes."""

from __future__ import annotations

import httpx
import pytest

from tests.web.conftest import BASE_URL, WebWorld, app_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

TOKEN = "s3cret-token-with-enough-length-0123456789"
INIT = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "test", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def auth_settings(world: WebWorld):  # type: ignore[no-untyped-def]
    return world.settings.model_copy(update={"auth_enabled": True, "bearer_token": TOKEN})


async def test_mcp_requires_the_token(world: WebWorld, auth_settings) -> None:  # type: ignore[no-untyped-def]
    from pydantic import SecretStr

    settings = auth_settings.model_copy(update={"bearer_token": SecretStr(TOKEN)})
    async with app_client(settings, world.library) as c:
        missing = await c.post("/mcp", json=INIT, headers=MCP_HEADERS)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="loist"'
        assert missing.json()["error"]["code"] == "UNAUTHORIZED"

        wrong = await c.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
        assert TOKEN not in wrong.text

        get_missing = await c.get("/mcp")
        assert get_missing.status_code == 401

        ok = await c.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200
        assert "serverInfo" in ok.text

        # public routes stay public
        for path in (f"/embed/{world.plain.id}", f"/audio/{world.plain.id}/stream", "/health/live",
                     "/health/ready", f"/oembed?url={BASE_URL}/embed/{world.plain.id}", "/.well-known/oembed.json"):
            r = await c.get(path)
            assert r.status_code == 200, path


async def test_mcp_open_without_auth(client: httpx.AsyncClient) -> None:
    r = await client.post("/mcp", json=INIT, headers=MCP_HEADERS)
    assert r.status_code == 200
    assert "serverInfo" in r.text


async def test_mcp_rejects_foreign_host_header(client: httpx.AsyncClient) -> None:
    """DNS-rebinding protection: a Host that is not ours (EMBED_BASE_URL / ALLOWED_HOSTS) is refused."""
    r = await client.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Host": "evil.example"})
    assert r.status_code == 421
    ours = await client.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Host": "music.example.test"})
    assert ours.status_code == 200


async def test_auth_cannot_be_enabled_without_a_token(world: WebWorld) -> None:
    from loist.web.app import create_app

    settings = world.settings.model_copy(update={"auth_enabled": True, "bearer_token": None})
    with pytest.raises(ValueError, match="BEARER_TOKEN"):
        create_app(settings, world.library)


# --- CORS --------------------------------------------------------------------------------------
async def test_cors_on_stream_exposes_range_headers(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.get(f"/audio/{world.plain.id}/stream",
                         headers={"Origin": "https://notion.example", "Range": "bytes=0-9"})
    assert r.status_code == 206
    assert r.headers["access-control-allow-origin"] == "https://notion.example"
    exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
    assert {"content-range", "accept-ranges", "content-length"} <= exposed


async def test_cors_preflight_allows_range(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.options(
        f"/audio/{world.plain.id}/stream",
        headers={"Origin": "https://notion.example", "Access-Control-Request-Method": "GET",
                 "Access-Control-Request-Headers": "range"},
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "https://notion.example"
    assert "range" in r.headers["access-control-allow-headers"].lower()


async def test_cors_refuses_unknown_origin(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.get(f"/audio/{world.plain.id}/thumbnail", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_no_cors_outside_public_media(client: httpx.AsyncClient) -> None:
    r = await client.get("/health/live", headers={"Origin": "https://notion.example"})
    assert "access-control-allow-origin" not in r.headers
    r = await client.post("/mcp", json=INIT, headers={**MCP_HEADERS, "Origin": "https://notion.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_no_cors_on_embed_page(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.get(f"/embed/{world.plain.id}", headers={"Origin": "https://notion.example"})
    assert r.status_code == 200
    assert "access-control-allow-origin" not in r.headers
