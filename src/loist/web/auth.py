"""Bearer-token protection for ``/mcp``.

With ``AUTH_ENABLED=true`` every request to the MCP endpoint must carry
``Authorization: Bearer <BEARER_TOKEN>``; the comparison is constant-time. Failures answer 401
with ``WWW-Authenticate: Bearer realm="loist"`` and the usual JSON error body. A client (an
address, :mod:`loist.web.ratelimit`) with more than ``RATE_LIMIT_AUTH_FAILURES`` failures in the
window gets 429 with ``Retry-After`` until the window has passed, whatever it sends: guessing the
token from one address is slowed to that rate, while a client elsewhere with the right token is
served as ever. The public routes
(embed, oEmbed, stream, thumbnail, health) are never wrapped: they are what people share.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from loist.config import Settings
from loist.errors import ErrorCode
from loist.web.errors import error_json
from loist.web.ratelimit import Kind, Limiter

REALM = "loist"


def token_matches(authorization: str | None, expected: str) -> bool:
    """True when the header is ``Bearer <expected>`` (scheme case-insensitive, constant-time compare)."""
    if not authorization or not expected:
        return False
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), expected.encode())


class BearerAuth:
    """Wrap an ASGI app so that it is reachable only with the configured bearer token."""

    def __init__(self, app: ASGIApp, settings: Settings, limiter: Limiter | None = None) -> None:
        self.app = app
        self.limiter = limiter
        self.enabled = settings.auth_enabled
        self.expected = settings.bearer_token.get_secret_value() if settings.bearer_token else ""
        if self.enabled and not self.expected:
            # Settings.check() refuses this too; never fall open if it was skipped.
            raise ValueError("AUTH_ENABLED is true but BEARER_TOKEN is empty")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = self.limiter.address_of(scope) if self.limiter is not None else ""
        refusal = await self.limiter.blocked(Kind.AUTH_FAILURES, client) if self.limiter is not None else None
        if refusal is not None:
            await refusal.response()(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        if token_matches(authorization, self.expected):
            await self.app(scope, receive, send)
            return
        if self.limiter is not None:
            await self.limiter.hit(Kind.AUTH_FAILURES, client)
        if authorization:
            challenge = f'Bearer realm="{REALM}", error="invalid_token"'
            message = "the bearer token is not valid for this server"
        else:
            challenge = f'Bearer realm="{REALM}"'
            message = "this endpoint needs an 'Authorization: Bearer <token>' header (AUTH_ENABLED is on)"
        response = error_json(401, str(ErrorCode.UNAUTHORIZED), message, headers={"WWW-Authenticate": challenge})
        await response(scope, receive, send)
