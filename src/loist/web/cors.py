"""CORS for the public media and oEmbed routes only.

Players on other sites fetch the stream (with ``Range``), the artwork and the oEmbed JSON from
scripts, so those answer to ``CORS_ORIGINS``; nothing else (notably ``/mcp``) sends CORS headers.
The range headers a player needs to read are exposed.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

CORS_PATH_PREFIXES: tuple[str, ...] = ("/audio/", "/oembed", "/.well-known/oembed")
EXPOSED_HEADERS: list[str] = ["Content-Range", "Accept-Ranges", "Content-Length", "ETag", "Last-Modified"]
ALLOWED_REQUEST_HEADERS: list[str] = ["Range", "If-None-Match", "If-Modified-Since", "If-Range"]


class ScopedCORS:
    """Apply Starlette's CORSMiddleware to :data:`CORS_PATH_PREFIXES`, pass everything else through."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors: ASGIApp | None = None
        if origins:
            self.cors = CORSMiddleware(
                app,
                allow_origins=origins,
                allow_methods=["GET", "HEAD", "OPTIONS"],
                allow_headers=ALLOWED_REQUEST_HEADERS,
                expose_headers=EXPOSED_HEADERS,
                max_age=3600,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.cors is not None and scope["type"] == "http" and scope["path"].startswith(CORS_PATH_PREFIXES):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
