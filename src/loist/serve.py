"""``loist serve``: run the one server on the transport the settings choose (``SERVER_TRANSPORT``).

- ``http``: uvicorn runs :func:`loist.web.app.create_app` (``/mcp`` plus the web routes) on
  ``SERVER_HOST``:``PORT``, in ``WEB_WORKERS`` processes (:mod:`loist.web.workers`). Where it
  listens and the public URLs are announced on stderr. ``PORT=0`` (``--port 0``) takes a free port
  from the OS; that port is the one announced and the one every derived URL names.
- ``stdio``: the MCP server (:func:`loist.mcp.server.run_stdio`) speaks JSON-RPC on stdin/stdout
  (for desktop clients that spawn it), with no web app; nothing else may write to stdout, so
  every message goes to stderr.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
from typing import TYPE_CHECKING, Any

from loist.config import Settings
from loist.errors import ConfigInvalid

if TYPE_CHECKING:
    import uvicorn


def _announce(message: str, data: dict[str, Any] | None = None, *, as_json: bool = False) -> None:
    """Tell the operator what is served, on stderr (stdout belongs to MCP over stdio)."""
    if as_json and data is not None:
        message = json.dumps(data)
    print(message, file=sys.stderr, flush=True)


def serve(settings: Settings, *, as_json: bool = False) -> None:
    """Run until interrupted.

    Before anything is announced the library is opened once and closed (its folders, the database
    and its schema: a coded error, e.g. ``DATABASE_FAILED`` for a schema that is behind, instead of
    a failure inside the server's start-up) and, for http, the port is bound (a port in use is
    ``CONFIG_INVALID``, before any "listening on" line).

    ``as_json``: the start-up announcement is one JSON object (``event: "serving"``) for scripts.
    """
    check_library(settings)
    if settings.server_transport == "stdio":
        _serve_stdio(settings, as_json)
    else:
        _serve_http(settings, as_json)


def check_library(settings: Settings) -> None:
    """Open the library the server will use, and close it again; its errors are raised as they are."""
    import asyncio

    from loist.library.service import Library

    async def go() -> None:
        library = await Library.open(settings)
        await library.close()

    asyncio.run(go())


def _serve_stdio(settings: Settings, as_json: bool = False) -> None:
    import anyio

    from loist.mcp.server import run_stdio

    catalog = settings.masked()["(database)"]
    _announce(
        f"{settings.server_name}: MCP over stdio (catalog {catalog}, library folder {settings.data_dir})",
        {"event": "serving", "server": settings.server_name, "transport": "stdio", "catalog": catalog,
         "data_dir": str(settings.data_dir)},
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
        "access_log": False,  # the app writes one access line per request itself (loist.web.observe)
        # X-Forwarded-For is read by loist.web.ratelimit alone, from TRUSTED_PROXY_COUNT proxies
        # (uvicorn would otherwise believe any such header sent from 127.0.0.1).
        "proxy_headers": False,
    }
    return uvicorn.Config(app, **{**chosen, **options})


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is announced; a port that cannot be had is
    :class:`ConfigInvalid` saying what to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart reuses the port at once
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = "the port is in use (another server, maybe another loist serve)" if exc.errno == errno.EADDRINUSE else (
            exc.strerror or str(exc))
        raise ConfigInvalid(
            f"cannot listen on {host}:{port}: {why}; stop that process or choose another port (--port or PORT)"
        ) from None
    sock.set_inheritable(True)
    return sock


def _serve_http(settings: Settings, as_json: bool = False) -> None:
    import uvicorn

    from loist.telemetry.setup import start as start_telemetry
    from loist.web.app import ANNOUNCED_PATHS, create_app
    from loist.web.reach import reachable_urls, start_warnings

    host = settings.server_host
    sock = bind(host, settings.port)  # a port in use fails here, before anything is started or announced
    port = int(sock.getsockname()[1])  # the one the OS gave, for --port 0
    # every URL derived from the port (announced, LAN, and the app's embed/stream/oEmbed links and
    # MCP origin check when EMBED_BASE_URL is unset) names that port; workers get these settings too
    settings = settings.model_copy(update={"port": port})
    # before the app: its engines and stores report from the start; with several workers it prepares
    # the folder they report into (PROMETHEUS_MULTIPROC_DIR) and serves their sums
    telemetry = start_telemetry(settings, workers=settings.web_workers)
    if telemetry.workers_dir is not None:
        settings = settings.model_copy(update={"prometheus_multiproc_dir": telemetry.workers_dir})
    # workers build their own; each runs JOBS_WORKERS background job workers (claims are safe across processes)
    app = create_app(settings, job_workers=settings.jobs_workers) if settings.web_workers == 1 else None
    shown = f"[{host}]" if ":" in host else host
    urls = {name: settings.public_base_url + path for name, path in ANNOUNCED_PATHS.items()}
    reachable, warnings = reachable_urls(settings), start_warnings(settings)
    _announce(
        f"{settings.server_name}: listening on http://{shown}:{port}\n"
        f"  reachable at  {'  '.join(reachable)}\n"
        f"  MCP endpoint  {urls['mcp']}{'  (bearer token required)' if settings.auth_enabled else ''}\n"
        f"  embed pages   {urls['embed'].replace('{id}', '<track id>')}\n"
        f"  health        {urls['health']}\n"
        f"  library       {settings.data_dir}"
        + (f"\n  metrics       {telemetry.listener.url}" if telemetry.listener else "")
        + "".join(f"\nwarning: {warning}" for warning in warnings),
        {
            "event": "serving", "server": settings.server_name, "transport": "http",
            "listen": f"http://{shown}:{port}", "auth": settings.auth_enabled, **urls,
            "data_dir": str(settings.data_dir),
            "metrics": telemetry.listener.url if telemetry.listener else None,
            "reachable": reachable, "warnings": warnings,
        },
        as_json=as_json,
    )
    stopped = {"event": "stopped", "server": settings.server_name}
    if settings.web_workers > 1:  # several processes on one port (loist.web.workers)
        from loist.web.workers import serve_workers

        try:
            status = serve_workers(settings, sock, uvicorn_config)
        finally:
            telemetry.close()
        _announce(f"{settings.server_name}: stopped", stopped, as_json=as_json)
        if status:
            raise SystemExit(status)
        return
    try:
        uvicorn.Server(uvicorn_config(app, settings)).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl-C after a graceful shutdown: that is a clean exit
        _announce(f"{settings.server_name}: stopped", stopped, as_json=as_json)
    finally:
        telemetry.close()
