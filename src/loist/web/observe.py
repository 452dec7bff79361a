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
from contextlib import nullcontext
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loist.telemetry import context, metrics, tracing

access_log = logging.getLogger("loist.access")

CLIENT_LEFT = 499


def route_label(scope: Scope, routes: Sequence[BaseRoute]) -> str:
    """The template of the route that served (or would serve) the request, else ``unmatched``."""
    route = scope.get("route")
    if route is None:  # answered before routing (another middleware): find the route it was for
        for candidate in routes:
            if candidate.matches(scope)[0] is not Match.NONE:
                route = candidate
                break
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else metrics.UNMATCHED


class Observe:
    """ASGI middleware: metrics, access log and trace context for every HTTP request."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute] = (), access: bool = True) -> None:
        self.app = app
        self.routes = routes
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = {"status": 0, "bytes": 0}

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        traced = tracing.active()
        token = context.bind(None if traced else context.from_headers(scope["headers"]))
        span_scope = tracing.server_span(scope["method"], scope["headers"]) if traced else nullcontext()
        try:
            with span_scope as span:
                try:
                    await self.app(scope, receive, observed_send)
                except asyncio.CancelledError:
                    raise
                except BaseException:
                    sent["status"] = sent["status"] or 500
                    raise
                finally:
                    self._done(scope, sent, time.perf_counter() - started, span)
        finally:
            context.unbind(token)

    def _done(self, scope: Scope, sent: dict[str, int], seconds: float, span: Any) -> None:
        status = sent["status"] or CLIENT_LEFT
        route = route_label(scope, self.routes)
        metrics.http_request(route, scope["method"], status, seconds)
        if span is not None:
            span.update_name(f"{scope['method']} {route}")
            span.set_attribute("http.route", route)
            span.set_attribute("http.response.status_code", status)
        if self.access and access_log.isEnabledFor(logging.INFO):
            _access_line(scope, status, sent["bytes"], seconds)


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
