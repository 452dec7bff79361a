"""The ASGI app: the public web routes and the MCP endpoint, composed in one Starlette app.

:func:`create_app` builds everything from a :class:`~loist.config.Settings` (no work at import
time, no globals), so tests build as many apps as they like. Composition, outermost first::

    Observe                metrics, access log, trace context (loist.web.observe)
    SecurityHeaders        DEFAULT_CSP / X-Frame-Options DENY unless a route set a CSP; nosniff, Referrer-Policy
    PublicRateLimit        RATE_LIMIT_PUBLIC per client outside /mcp (loist.web.ratelimit)
    ScopedCORS             CORS_ORIGINS, only for /audio/*, /oembed, /.well-known/oembed.json
    Admission              per-kind concurrency bounds; past them 503 OVERLOADED + Retry-After
    Starlette router       /  /embed/{id}  /oembed  /.well-known/oembed.json
                           /audio/{id}/stream  /audio/{id}/thumbnail  /audio/{id}/waveform.json
                           /audio/{id}/original  /health/live  /health/ready
                           /static/*  /mcp (BearerAuth -> McpEndpoint (McpLimits) -> MCP streamable HTTP session manager)

The lifespan holds the library open through the app's
:class:`~loist.library.holder.LibraryHolder` (opening and closing one when none was handed in), then
runs the MCP session managers, which share that holder. Errors are mapped to HTTP once, in :mod:`loist.web.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from loist.config import Settings
from loist.library.holder import LibraryHolder
from loist.library.jobs import background_workers
from loist.mcp.server import create_mcp_server, mcp_http_managers
from loist.web import derived, embed, health, landing, oembed, stream
from loist.web.admission import Admission, AdmissionLimits
from loist.web.auth import BearerAuth
from loist.web.context import WebContext, make_templates
from loist.web.cors import ScopedCORS
from loist.web.errors import exception_handlers
from loist.web.mcp_limits import McpLimits
from loist.web.mcp_route import Managers, McpEndpoint
from loist.web.observe import Observe
from loist.web.ratelimit import Limiter, PublicRateLimit
from loist.web.security import SecurityHeaders

if TYPE_CHECKING:
    from loist.library.service import Library

MCP_PATH = "/mcp"
# What ``loist serve`` announces at start-up: name -> path template ({id}: a track id).
ANNOUNCED_PATHS = {"mcp": MCP_PATH, "embed": "/embed/{id}", "health": "/health/ready"}


def create_app(settings: Settings, library: Library | None = None, *, job_workers: int = 0) -> Starlette:
    """Build the app. With ``library`` the caller owns it; without, the lifespan opens and closes one.
    ``job_workers``: background job workers to run while the app runs (``loist serve``: JOBS_WORKERS)."""
    ctx = WebContext(settings=settings, templates=make_templates(), holder=LibraryHolder(library, name="the web app's library"))

    mcp_server = create_mcp_server(settings, ctx.holder, transport="http")
    # Builds the session managers (plain JSON and SSE answers), with the SDK's Host/Origin protection
    # configured from EMBED_BASE_URL + ALLOWED_HOSTS (see loist.mcp.server.transport_security). We do
    # not mount the SDK's own app: /mcp is routed here so the bearer check and the error format are ours.
    managers = Managers(*mcp_http_managers(mcp_server, settings, path=MCP_PATH))
    limiter = Limiter(settings)
    endpoint = McpEndpoint(McpLimits(limiter, settings).admit, ctx.site_name, f"{ctx.base_url}/")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with (
            ctx.holder.opened(settings) as opened,
            managers.json.run(),
            managers.stream.run(),
            background_workers(settings, opened.derived, opened.jobs_wake, count=job_workers),
        ):
            endpoint.managers = managers
            try:
                yield
            finally:
                endpoint.managers = None
                await limiter.aclose()

    routes: list[BaseRoute] = [
        *landing.routes(ctx, MCP_PATH),
        *embed.routes(ctx),
        *oembed.routes(ctx),
        *stream.routes(ctx),
        *derived.routes(ctx),
        *health.routes(ctx),
        Route(MCP_PATH, BearerAuth(endpoint, settings, limiter), name="mcp"),
        Mount("/static", StaticFiles(packages=[("loist.web", "static")]), name="static"),
    ]
    middleware = [
        # outermost: it sees every answer, those of the middleware below included
        Middleware(Observe, routes=routes, access=settings.access_log, trace_logs=settings.log_format == "json"),
        Middleware(SecurityHeaders),
        Middleware(PublicRateLimit, limiter=limiter, mcp_path=MCP_PATH),
        Middleware(ScopedCORS, origins=settings.cors_origins),
        Middleware(Admission, limits=AdmissionLimits.from_settings(settings)),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers(ctx),
        lifespan=lifespan,
    )
    app.state.web = ctx
    return app
