"""docs/embedding.md stays true: every public route and every unfurl tag the page sends is documented."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.web.conftest import WebWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")

DOC = Path(__file__).resolve().parents[2] / "docs" / "embedding.md"


async def test_every_public_route_is_documented(world: WebWorld) -> None:
    from loist.web.app import create_app

    text = DOC.read_text(encoding="utf-8")
    app = create_app(world.settings, world.library)
    paths = {getattr(route, "path", "") for route in app.routes} - {"/mcp", "/static", ""}
    for path in paths:
        documented = path.replace("{track_id}", "{id}")
        assert f"`GET {documented}" in text, f"{path} is not in docs/embedding.md"


async def test_every_unfurl_tag_is_documented(client: httpx.AsyncClient, world: WebWorld) -> None:
    text = DOC.read_text(encoding="utf-8")
    html = (await client.get(f"/embed/{world.with_art.id}")).text
    names = set(re.findall(r'<meta (?:property|name)="((?:og|music|twitter):[^"]+)"', html))
    assert {"og:audio", "twitter:player", "music:duration"} <= names
    for name in names:
        base = re.sub(r":(width|height|type|secure_url|content_type)$", "", name)
        assert f"`{name}`" in text or f"`{base}`" in text, f"{name} is not in docs/embedding.md"
