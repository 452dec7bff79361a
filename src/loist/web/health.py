"""``/health/live`` and ``/health/ready``: what Cloud Run and uptime checks poll.

``live`` answers 200 whenever the process can serve a request (it touches nothing else).
``ready`` asks the library whether the database and the storage are usable: 200 when both are,
503 otherwise, so a broken dependency takes the instance out of rotation instead of serving errors.

Both routes are public, so their bodies carry stable codes and nothing about the deployment: no
database URL, host or user, no bucket name, no folder. Each check shows ``ok``, the dialect or
backend, its latency and, when it fails, its error ``code`` and a ``reason`` from a fixed set
(``LOW_DISK_SPACE``). The full report, messages included, goes to the server log at WARNING when
the instance is not ready (and to the MCP ``health_check`` tool, behind the bearer token).
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loist.errors import LoistError
from loist.web.context import WebContext

log = logging.getLogger(__name__)

NO_STORE = {"Cache-Control": "no-store"}
PARTS = ("database", "storage")
PUBLIC_FIELDS = ("ok", "dialect", "backend", "latency_ms")
REASONS = frozenset({"LOW_DISK_SPACE"})  # the only detail reasons a public body may carry


def _is_ok(part: Any) -> bool:
    return isinstance(part, dict) and part.get("ok") is True


def public_check(part: Any) -> dict[str, Any]:
    """What an unauthenticated caller may see of one check."""
    if not isinstance(part, dict):
        return {"ok": False}
    shown = {key: part[key] for key in PUBLIC_FIELDS if key in part}
    error = part.get("error")
    if isinstance(error, dict):
        shown["code"] = str(error.get("code", "INTERNAL"))
        reason = (error.get("details") or {}).get("reason")
        if reason in REASONS:
            shown["reason"] = reason
    return shown


def _summary(name: str, check: dict[str, Any]) -> str:
    code = check.get("code", "unreachable")
    return f"{name}: {code} ({check['reason']})" if "reason" in check else f"{name}: {code}"


def routes(ctx: WebContext) -> list[Route]:
    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=NO_STORE)

    async def ready(request: Request) -> Response:
        try:
            report = await ctx.library.health()
        except LoistError as exc:
            log.warning("not ready: %s", exc)
            body = {"status": "unavailable", "code": str(exc.code), "reason": str(exc.code)}
            return JSONResponse(body, status_code=503, headers=NO_STORE)
        checks = {name: public_check(report.get(name)) for name in PARTS}
        failing = [name for name in PARTS if not _is_ok(report.get(name))]
        if failing:
            log.warning("not ready: %s", "; ".join(
                f"{name}: {(report.get(name) or {}).get('error', 'no report')}" for name in failing))
            reason = "; ".join(_summary(name, checks[name]) for name in failing)
            body = {"status": "unavailable", "reason": reason, "checks": checks}
            return JSONResponse(body, status_code=503, headers=NO_STORE)
        return JSONResponse({"status": "ok", "checks": checks}, headers=NO_STORE)

    return [
        Route("/health/live", live, methods=["GET", "HEAD"], name="health_live"),
        Route("/health/ready", ready, methods=["GET", "HEAD"], name="health_ready"),
    ]
