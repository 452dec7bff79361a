"""``/health/live`` and ``/health/ready``: what Cloud Run and uptime checks poll.

``live`` answers 200 whenever the process can serve a request (it touches nothing else).
``ready`` asks the library whether the database and the storage are reachable: 200 with the
details when both are, 503 with the reason otherwise, so a broken dependency takes the instance
out of rotation instead of serving errors.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loist.errors import LoistError
from loist.web.context import WebContext

NO_STORE = {"Cache-Control": "no-store"}


def _is_ok(part: Any) -> bool:
    if isinstance(part, dict):
        if "ok" in part:
            return bool(part["ok"])
        if "status" in part:
            return str(part["status"]).lower() in ("ok", "healthy", "up")
    if isinstance(part, bool):
        return part
    if isinstance(part, str):
        return part.lower() in ("ok", "healthy", "up")
    return False


def routes(ctx: WebContext) -> list[Route]:
    async def live(request: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=NO_STORE)

    async def ready(request: Request) -> Response:
        try:
            report = await ctx.library.health()
        except LoistError as exc:
            body = {"status": "unavailable", "reason": exc.message, "code": str(exc.code)}
            return JSONResponse(body, status_code=503, headers=NO_STORE)
        failing = [name for name in ("database", "storage") if not _is_ok(report.get(name))]
        if failing:
            reason = "; ".join(f"{name}: {_reason(report.get(name))}" for name in failing)
            body = {"status": "unavailable", "reason": reason, "checks": report}
            return JSONResponse(body, status_code=503, headers=NO_STORE)
        return JSONResponse({"status": "ok", "checks": report}, headers=NO_STORE)

    return [
        Route("/health/live", live, methods=["GET", "HEAD"], name="health_live"),
        Route("/health/ready", ready, methods=["GET", "HEAD"], name="health_ready"),
    ]


def _reason(part: Any) -> str:
    if isinstance(part, dict):
        for key in ("error", "message", "reason", "detail"):
            value = part.get(key)
            if isinstance(value, dict) and value.get("message"):
                return str(value["message"])
            if value:
                return str(value)
    return "unreachable" if part is None else str(part)
