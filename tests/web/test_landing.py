"""``GET /`` (what this server is), a bare ``GET /mcp``, and the name unfurls show."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from loist.web.assets import csp_hash, load_assets
from tests.web.conftest import BASE_URL, WebWorld, app_client, make_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def test_landing_page_says_what_the_server_is_and_nothing_about_the_library(
    client: httpx.AsyncClient, world: WebWorld
) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert f"<code>{BASE_URL}/mcp</code>" in page
    assert f'href="{BASE_URL}/health/ready"' in page
    assert "/embed/&lt;track id&gt;" in page and "docs/mcp.md" in page
    assert "Bearer" not in page  # this server has no token
    for track in (world.with_art, world.plain, world.big):  # nothing from the library
        assert str(track.id) not in page
    assert "Plain" not in page and "Nobody" not in page
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert csp_hash(load_assets().landing_css) in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert re.search(r"<script", page) is None
    head = await client.head("/")
    assert head.status_code == 200 and head.content == b""


async def test_landing_page_of_a_server_with_a_token_and_docs(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_enabled=True, bearer_token="t" * 40,  # noqa: S106 - a test token
                             server_name="Studio Shelf", docs_url="https://docs.example.test/loist")
    async with app_client(settings) as client:
        r = await client.get("/")  # no token needed for the page itself
    assert r.status_code == 200
    assert "<title>Studio Shelf</title>" in r.text
    assert "Authorization: Bearer &lt;token&gt;" in r.text
    assert 'href="https://docs.example.test/loist"' in r.text
    assert "t" * 40 not in r.text


async def test_a_bare_get_on_mcp_is_answered_at_once_with_what_to_do(client: httpx.AsyncClient) -> None:
    r = await client.get("/mcp")  # what curl sends: no Accept: text/event-stream
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    message = r.json()["error"]["message"]
    assert "MCP client" in message and "POST" in message and f"{BASE_URL}/" in message


async def test_unfurls_name_the_public_host_unless_server_name_is_set(client: httpx.AsyncClient, world: WebWorld) -> None:
    embed = (await client.get(f"/embed/{world.plain.id}")).text
    assert '<meta property="og:site_name" content="music.example.test">' in embed
    oembed = (await client.get("/oembed", params={"url": f"{BASE_URL}/embed/{world.plain.id}"})).json()
    assert oembed["provider_name"] == "music.example.test"
    assert "Music Library MCP" not in embed + str(oembed)


async def test_unfurls_use_server_name_when_it_is_set(tmp_path: Path, world: WebWorld) -> None:
    settings = make_settings(tmp_path, server_name="Studio Shelf")
    async with app_client(settings, world.library) as client:
        oembed = (await client.get("/oembed", params={"url": f"{BASE_URL}/embed/{world.plain.id}"})).json()
        embed = (await client.get(f"/embed/{world.plain.id}")).text
    assert oembed["provider_name"] == "Studio Shelf"
    assert '<meta property="og:site_name" content="Studio Shelf">' in embed
