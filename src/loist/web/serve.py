"""``loist serve``: run the one server on stdio or streamable HTTP.

- ``http``: uvicorn runs :func:`loist.web.app.create_app` (``/mcp`` plus the web routes). Where
  it listens and the public URLs are announced on stderr.
- ``stdio``: the MCP server speaks JSON-RPC on stdin/stdout (for desktop clients that spawn it);
  nothing else may write to stdout, so every message goes to stderr.
"""

from __future__ import annotations

import sys
from typing import Literal

from loist.config import Settings

Transport = Literal["stdio", "http"]


def _announce(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def serve(settings: Settings, *, transport: str, host: str, port: int) -> None:
    """Run until interrupted. ``host``/``port`` override the settings (they are what we bind)."""
    if transport not in ("stdio", "http"):
        from loist.errors import InvalidArgument

        raise InvalidArgument(f"transport must be stdio or http, got {transport!r}")
    settings = settings.model_copy(update={"server_host": host, "port": port, "server_transport": transport})
    if transport == "stdio":
        _serve_stdio(settings)
    else:
        _serve_http(settings, host, port)


def _serve_stdio(settings: Settings) -> None:
    import anyio

    from loist.mcp.server import run_stdio

    _announce(f"{settings.server_name}: MCP over stdio (catalog {settings.masked()['(database)']})")
    anyio.run(run_stdio, settings)


def _serve_http(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from loist.web.app import create_app

    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    base = settings.public_base_url
    _announce(
        f"{settings.server_name}: listening on http://{shown}:{port}\n"
        f"  MCP endpoint  {base}/mcp{'  (bearer token required)' if settings.auth_enabled else ''}\n"
        f"  embed pages   {base}/embed/<track id>\n"
        f"  health        {base}/health/ready"
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's loggers propagate to the root handler of loist.logs (LOG_FORMAT)
        lifespan="on",
        server_header=False,
    )
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after a graceful shutdown: that is a clean exit
        _announce(f"{settings.server_name}: stopped")
