"""``loist serve``: run the one server on the transport the settings choose (``SERVER_TRANSPORT``).

- ``http``: uvicorn runs :func:`loist.web.app.create_app` (``/mcp`` plus the web routes) on
  ``SERVER_HOST``:``PORT``. Where it listens and the public URLs are announced on stderr.
- ``stdio``: the MCP server (:func:`loist.mcp.server.run_stdio`) speaks JSON-RPC on stdin/stdout
  (for desktop clients that spawn it), with no web app; nothing else may write to stdout, so
  every message goes to stderr.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from loist.config import Settings

if TYPE_CHECKING:
    import uvicorn


def _announce(message: str, data: dict[str, Any] | None = None, *, as_json: bool = False) -> None:
    """Tell the operator what is served, on stderr (stdout belongs to MCP over stdio)."""
    if as_json and data is not None:
        message = json.dumps(data)
    print(message, file=sys.stderr, flush=True)


def serve(settings: Settings, *, as_json: bool = False) -> None:
    """Run until interrupted.

    ``as_json``: the start-up announcement is one JSON object (``event: "serving"``) for scripts.
    """
    if settings.server_transport == "stdio":
        _serve_stdio(settings, as_json)
    else:
        _serve_http(settings, as_json)


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


def _serve_http(settings: Settings, as_json: bool = False) -> None:
    import uvicorn

    from loist.web.app import ANNOUNCED_PATHS, create_app

    app = create_app(settings, job_workers=settings.jobs_workers)
    host, port = settings.server_host, settings.port
    shown = f"[{host}]" if ":" in host else host
    urls = {name: settings.public_base_url + path for name, path in ANNOUNCED_PATHS.items()}
    _announce(
        f"{settings.server_name}: listening on http://{shown}:{port}\n"
        f"  MCP endpoint  {urls['mcp']}{'  (bearer token required)' if settings.auth_enabled else ''}\n"
        f"  embed pages   {urls['embed'].replace('{id}', '<track id>')}\n"
        f"  health        {urls['health']}",
        {
            "event": "serving", "server": settings.server_name, "transport": "http",
            "listen": f"http://{shown}:{port}", "auth": settings.auth_enabled, **urls,
        },
        as_json=as_json,
    )
    config = uvicorn_config(app, settings, host=host, port=port)
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after a graceful shutdown: that is a clean exit
        _announce(f"{settings.server_name}: stopped", {"event": "stopped", "server": settings.server_name}, as_json=as_json)
