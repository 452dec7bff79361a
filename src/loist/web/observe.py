"""One middleware that sees every HTTP request: its metrics, its access-log line and its trace.

The outermost of the app's middleware, so it times and counts what clients get, including answers
other middleware gives before any route runs. Per request it:

- labels the request with its route *template* (``/embed/{id}``), or ``unmatched`` when no route
  matches (so a scan of random paths cannot grow the label set);
- counts it in ``loist_http_requests_total{route,method,status}`` and times it, to the end of the
  response body, in ``loist_http_request_duration_seconds{route,method}``;
- writes one access-log line (``ACCESS_LOG``) on ``loist.access``: method, path without the query
  string, status, latency and response size (in JSON also as Cloud Logging's ``httpRequest``);
- binds the request's trace for log lines: a server span when tracing is on, else the caller's
  ``traceparent`` / ``X-Cloud-Trace-Context`` (:mod:`loist.telemetry.context`).

A request whose client left before any response is counted with status 499 (nginx's "client
closed request"); one that raised before answering, 500 (what Starlette then sends).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loist.telemetry import context, metrics, tracing

access_log = logging.getLogger("loist.access")

CLIENT_LEFT = 499


def route_label(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route that served (or would serve) the request, else ``unmatched``."""
    route = scope.get("route")
    if route is not None and type(template := getattr(route, "path_format", None)) is str:
        return template
    if route is None:  # answered before routing (another middleware): find the route it was for
        for candidate in routes:
            if candidate.matches(scope)[0] is not Match.NONE:
                route = candidate
                break
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else metrics.UNMATCHED


class Observe:
    """ASGI middleware: metrics, access log and trace context for every HTTP request.

    ``access``: write the access lines (``ACCESS_LOG``). ``trace_logs``: bind each request's trace
    headers for log lines (only JSON lines carry the trace, so ``LOG_FORMAT=json``).
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = (), access: bool = True,
                 trace_logs: bool = True) -> None:
        self.app = app
        self.routes = routes
        self.access = access
        self.trace_logs = trace_logs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # One coroutine and no helper calls on the usual path: this runs for every request, and
        # each call and frame costs (bench/telemetry_overhead.py, docs/benchmarks.md).
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = size = 0
        error: BaseException | None = None

        async def observed_send(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        span = tracing.start_server_span(scope["method"], scope["headers"]) if tracing.active() else None
        token = context.bind(scope["headers"]) if self.trace_logs else None  # parsed only if a line asks
        try:
            await self.app(scope, receive, observed_send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            status, error = status or 500, exc
            raise
        finally:
            seconds = time.perf_counter() - started
            status = status or CLIENT_LEFT
            route = getattr(scope.get("route"), "path_format", None)  # the usual case, without a call
            if type(route) is not str:
                route = route_label(scope, self.routes)
            metrics.http_request(route, scope["method"], status, seconds)
            if self.access and access_log.isEnabledFor(logging.INFO):
                _access_line(scope, status, size, seconds)  # while the trace is still the request's
            if span is not None:
                tracing.end_server_span(span, scope["method"], route, status, error)
            if token is not None:
                context.unbind(token)


def _access_line(scope: Scope, status: int, size: int, seconds: float) -> None:
    method, path = scope["method"], scope.get("root_path", "") + scope["path"]
    client = scope.get("client")
    agent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), None)
    request = {
        "requestMethod": method,
        "requestUrl": path,
        "status": status,
        "responseSize": str(size),
        "latency": f"{seconds:.6f}s",
        "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
        **({"remoteIp": client[0]} if client else {}),
        **({"userAgent": agent} if agent else {}),
    }
    access_log.info("%s %s %d %.1f ms", method, path, status, seconds * 1000, extra={"http_request": request})
