"""The one place where errors become HTTP responses.

A :class:`loist.errors.LoistError` becomes the status from :data:`loist.errors.HTTP_STATUS` with
a JSON body ``{"error": {"code", "message"}}``; Starlette's own HTTP errors (unknown route, wrong
method) get the same body shape. Requests for an embed page get an HTML page instead, because a
person (or an iframe) is looking at it.

These routes are public. A message about the caller's request is shown as it is; a failure of the
deployment itself can name it (a database URL with user, host and port; a bucket; a folder), so the
body carries the code and the generic words of :data:`loist.errors.PUBLIC_MESSAGE`, and the real
message goes to the server log at WARNING.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from loist.errors import ErrorCode, LoistError, public_message
from loist.web.context import WebContext
from loist.web.security import embed_csp

log = logging.getLogger(__name__)

_STATUS_CODE: dict[int, ErrorCode] = {
    400: ErrorCode.INVALID_ARGUMENT,
    401: ErrorCode.UNAUTHORIZED,
    404: ErrorCode.NOT_FOUND,
    429: ErrorCode.RATE_LIMITED,
}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_json(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _wants_html(request: Request) -> bool:
    return request.url.path.startswith("/embed/")


def _html_error(ctx: WebContext, status: int, title: str, message: str) -> Response:
    html = ctx.templates.get_template("error.html").render(
        status=status, title=title, message=message, css=ctx.assets.error_css
    )
    headers = {"Content-Security-Policy": embed_csp(ctx), "Cache-Control": "no-store"}
    return HTMLResponse(html, status_code=status, headers=headers)


def exception_handlers(ctx: WebContext) -> dict[Any, Any]:
    """Handlers for create_app: LoistError, Starlette HTTPException and anything unexpected."""

    async def loist_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoistError)
        status = exc.http_status
        message = public_message(exc)
        if status >= 500:
            log.warning("%s %s -> %d %s: %s", request.method, request.url.path, status, exc.code, exc.message)
        if _wants_html(request):
            title = "Track not found" if status == 404 else "Something went wrong"
            return _html_error(ctx, status, title, message)
        return error_json(status, str(exc.code), message)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = _STATUS_CODE.get(exc.status_code, ErrorCode.INVALID_ARGUMENT)
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if _wants_html(request):
            return _html_error(ctx, exc.status_code, "Not found", message)
        return error_json(exc.status_code, str(code), message, headers=exc.headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_json(500, str(ErrorCode.INTERNAL), "internal server error")

    return {LoistError: loist_error, HTTPException: http_error, Exception: unexpected}
