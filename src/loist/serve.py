"""``loist serve``: run the one server on stdio or streamable HTTP.

- ``http``: uvicorn runs :func:`loist.web.app.create_app` (``/mcp`` plus the web routes). Where
  it listens and the public URLs are announced on stderr.
- ``stdio``: the MCP server speaks JSON-RPC on stdin/stdout (for desktop clients that spawn it);
  nothing else may write to stdout, so every message goes to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Literal

from loist.config import Settings

if TYPE_CHECKING:
    import uvicorn

Transport = Literal["stdio", "http"]


def _announce(message: str, data: dict[str, Any] | None = None, *, as_json: bool = False) -> None:
    """Tell the operator what is served, on stderr (stdout belongs to MCP over stdio)."""
    if as_json and data is not None:
        message = json.dumps(data)
    print(message, file=sys.stderr, flush=True)


def serve(settings: Settings, *, transport: str, host: str, port: int, as_json: bool = False) -> None:
    """Run until interrupted. ``host``/``port`` override the settings (they are what we bind).

    ``as_json``: the start-up announcement is one JSON object (``event: "serving"``) for scripts.
    """
    if transport not in ("stdio", "http"):
        from loist.errors import InvalidArgument

        raise InvalidArgument(f"transport must be stdio or http, got {transport!r}")
    settings = settings.model_copy(update={"server_host": host, "port": port, "server_transport": transport})
    if transport == "stdio":
        _serve_stdio(settings, as_json)
    else:
        _serve_http(settings, host, port, as_json)


def _serve_stdio(settings: Settings, as_json: bool = False) -> None:
    import anyio

    from loist.mcp.server import run_stdio

    catalog = settings.masked()["(database)"]
    _announce(
        f"{settings.server_name}: MCP over stdio (catalog {catalog})",
        {"event": "serving", "server": settings.server_name, "transport": "stdio", "catalog": catalog},
        as_json=as_json,
    )
    anyio.run(run_stdio, settings)


def uvicorn_config(app: Any, settings: Settings, **options: Any) -> uvicorn.Config:
    """How uvicorn runs the app: httptools with our connection limits (:mod:`loist.web.protocol`),
    our logging, no ``Server`` header. ``options`` (host, port, ...) are passed to uvicorn as well
    (tests use this to quieten the log)."""
    import uvicorn

    from loist.web.protocol import HttpLimits, protocol_class

    chosen: dict[str, Any] = {
        "http": protocol_class(HttpLimits.from_settings(settings)),
        "log_level": settings.log_level.lower(),
        "log_config": None,  # uvicorn's loggers propagate to the root handler of loist.logs (LOG_FORMAT)
        "lifespan": "on",
        "server_header": False,
    }
    return uvicorn.Config(app, **{**chosen, **options})


def _serve_http(settings: Settings, host: str, port: int, as_json: bool = False) -> None:
    import uvicorn

    from loist.web.app import create_app

    app = create_app(settings)
    shown = f"[{host}]" if ":" in host else host
    base = settings.public_base_url
    _announce(
        f"{settings.server_name}: listening on http://{shown}:{port}\n"
        f"  MCP endpoint  {base}/mcp{'  (bearer token required)' if settings.auth_enabled else ''}\n"
        f"  embed pages   {base}/embed/<track id>\n"
        f"  health        {base}/health/ready",
        {
            "event": "serving", "server": settings.server_name, "transport": "http",
            "listen": f"http://{shown}:{port}", "mcp": f"{base}/mcp", "auth": settings.auth_enabled,
            "embed": f"{base}/embed/{{id}}", "health": f"{base}/health/ready",
        },
        as_json=as_json,
    )
    config = uvicorn_config(app, settings, host=host, port=port)
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after a graceful shutdown: that is a clean exit
        _announce(f"{settings.server_name}: stopped", {"event": "stopped", "server": settings.server_name}, as_json=as_json)
