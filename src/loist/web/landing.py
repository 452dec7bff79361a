"""``GET /``: what this server is, for a person who opens its address in a browser.

It names the MCP endpoint (and whether it needs a token), the health routes, the shape of the
shared player URLs and where the documentation is. It says nothing about the library (no counts, no
titles), so it is the same for everyone, needs no token and works before the library is open.
The page is static per app: rendered once, cached by browsers for a few minutes, styled by one
inline stylesheet allowed by its hash, never framed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loist.web.assets import csp_hash
from loist.web.context import WebContext

LANDING_CACHE_CONTROL = "public, max-age=300"


def landing_csp(css_hash: str) -> str:
    return "; ".join(
        [
            "default-src 'none'",
            f"style-src {css_hash}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def render_landing(ctx: WebContext, mcp_path: str) -> bytes:
    html = ctx.templates.get_template("landing.html").render(
        title=ctx.site_name,
        css=ctx.assets.landing_css,
        base_url=ctx.base_url,
        mcp_url=ctx.base_url + mcp_path,
        auth=ctx.settings.auth_enabled,
        docs_url=docs if (docs := ctx.settings.docs_url or "").startswith(("https://", "http://")) else None,
    )
    return html.encode("utf-8")


def routes(ctx: WebContext, mcp_path: str) -> list[Route]:
    body: list[bytes] = []  # rendered on first use (the settings do not change while the app runs)
    headers = {
        "Content-Security-Policy": landing_csp(csp_hash(ctx.assets.landing_css)),
        "X-Frame-Options": "DENY",
        "Cache-Control": LANDING_CACHE_CONTROL,
    }

    async def landing(request: Request) -> Response:
        if not body:
            body.append(render_landing(ctx, mcp_path))
        return Response(body[0], media_type="text/html; charset=utf-8", headers=headers)

    return [Route("/", landing, methods=["GET", "HEAD"], name="landing")]
