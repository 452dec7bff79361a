"""Response security headers: who may frame us, and what an embed page may load.

Framing is controlled by the ``Content-Security-Policy: frame-ancestors`` *response header*
(a ``<meta>`` tag is ignored by browsers for this). Embed pages carry ``frame-ancestors
<FRAME_ANCESTORS>`` (default ``*``, so Notion, Slack and Discord can frame the player) plus a strict
policy for everything else; every other response gets :data:`DEFAULT_CSP` (nothing may load,
nothing may frame it) and ``X-Frame-Options: DENY`` from :class:`SecurityHeaders`. Every response
carries ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from loist.web.context import WebContext

# The policy of every response that did not set its own: JSON, media and any HTML a future route
# forgets to give a policy can load nothing, be framed by nobody, and post nowhere.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def embed_csp(ctx: WebContext) -> str:
    """The embed page's policy: nothing external; only our own inline script and styles (by hash)."""
    media = " ".join(["'self'", origin_of(ctx.base_url), *sorted(ctx.extra_media_origins)])
    return "; ".join(
        [
            "default-src 'none'",
            f"media-src {media}",
            f"img-src {media} data:",
            f"style-src {ctx.assets.style_hashes}",
            f"script-src {ctx.assets.script_hashes}",
            "base-uri 'none'",
            "form-action 'none'",
            f"frame-ancestors {ctx.settings.frame_ancestors}",
        ]
    )


class SecurityHeaders:
    """Deny framing and MIME sniffing on every response that did not set its own policy."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "content-security-policy" not in headers:
                    headers["Content-Security-Policy"] = DEFAULT_CSP
                    headers["X-Frame-Options"] = "DENY"
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
            await send(message)

        await self.app(scope, receive, send_with_headers)
