"""Security headers on every response of every route, HTML above all (loist.web.security).

The list of requests below covers every route the app has (a new route fails
``test_every_route_is_covered`` until it is added here), answered and failed.
"""

from __future__ import annotations

import httpx
import pytest
from starlette.routing import Mount, Route

from loist.web.security import DEFAULT_CSP
from tests.web.conftest import BASE_URL, WebWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")

MISSING = "00000000-0000-4000-8000-000000000000"


def requests_for(world: WebWorld) -> list[tuple[str, str]]:
    """(route path template, concrete request path): each route, found and not found."""
    art, plain = world.with_art.id, world.plain.id
    return [
        ("/", "/"),
        ("/embed/{track_id}", f"/embed/{art}"),
        ("/embed/{track_id}", f"/embed/{plain}"),
        ("/embed/{track_id}", f"/embed/{MISSING}"),
        ("/embed/{track_id}", "/embed/%3Cscript%3E"),
        ("/oembed", f"/oembed?url={BASE_URL}/embed/{art}"),
        ("/oembed", "/oembed?url=x"),
        ("/.well-known/oembed.json", "/.well-known/oembed.json"),
        ("/audio/{track_id}/stream", f"/audio/{plain}/stream"),
        ("/audio/{track_id}/stream", f"/audio/{MISSING}/stream"),
        ("/audio/{track_id}/thumbnail", f"/audio/{art}/thumbnail"),
        ("/audio/{track_id}/waveform.json", f"/audio/{plain}/waveform.json"),
        ("/audio/{track_id}/waveform.json", f"/audio/{MISSING}/waveform.json"),
        ("/audio/{track_id}/original", f"/audio/{plain}/original"),
        ("/health/live", "/health/live"),
        ("/health/ready", "/health/ready"),
        ("/static", "/static/artwork.png"),
        ("/mcp", "/mcp"),
        ("(none)", "/no-such-page"),
    ]


async def test_every_route_is_covered(world: WebWorld) -> None:
    from loist.web.app import create_app

    app = create_app(world.settings, world.library)
    paths = {r.path for r in app.routes if isinstance(r, Route | Mount)}
    assert paths <= {template for template, _ in requests_for(world)}


async def test_every_response_carries_the_security_headers(client: httpx.AsyncClient, world: WebWorld) -> None:
    html_seen = 0
    for _, path in requests_for(world):
        r = await client.get(path)
        csp = r.headers.get("content-security-policy", "")
        directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
        assert r.headers["x-content-type-options"] == "nosniff", path
        assert r.headers["referrer-policy"] == "strict-origin-when-cross-origin", path
        assert directives.get("default-src") == ["'none'"], (path, csp)
        assert directives.get("base-uri") == ["'none'"] and directives.get("form-action") == ["'none'"], path
        if r.headers.get("content-type", "").startswith("text/html"):
            html_seen += 1
            assert path == "/" or path.startswith("/embed/"), f"an HTML page outside / and /embed/: {path}"
            assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, path
        if path.startswith("/embed/"):
            # The player is meant to be framed by Notion, Slack, Discord (FRAME_ANCESTORS, default *)
            assert directives["frame-ancestors"] == ["*"], path
            assert "x-frame-options" not in r.headers, path
        elif path == "/":
            # the landing page: its own stylesheet by hash, never framed
            assert directives["frame-ancestors"] == ["'none'"], csp
            assert r.headers["x-frame-options"] == "DENY", path
        else:
            assert csp == DEFAULT_CSP, path
            assert r.headers["x-frame-options"] == "DENY", path
    assert html_seen == 5  # the landing page, two players, two not-found pages
