"""``/audio/{id}/waveform.json`` and ``/audio/{id}/original``: a track's derived and original bytes.

- ``waveform.json``: the waveform peaks (waveform-data JSON version 2, made by a background job),
  served here whatever the store (a small JSON the player fetches: no redirect to another origin),
  with the byte-serving rules of :func:`loist.web.stream.blob_response` (ETag, 304, Range). Until
  the job has run it is ``404`` with ``{"error": {"code": "NOT_FOUND", "state": ..., "retryable"}}``
  and ``Cache-Control: no-store``, so a player that asks again later gets it.
- ``original``: the bytes as ingested, even when ``/stream`` serves a web rendition (AIFF, WMA,
  APE, ...), as an attachment named like the source file.
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loist.errors import NotFound
from loist.web.context import WebContext
from loist.web.embed import load_track
from loist.web.errors import error_body
from loist.web.stream import blob_response, redirect_if_signed

WAVEFORM_MIME = "application/json"


def routes(ctx: WebContext) -> list[Route]:
    async def waveform(request: Request) -> Response:
        track = await load_track(ctx, request.path_params["track_id"])
        try:
            info = await ctx.library.derived.waveform(track)
        except NotFound as exc:
            if "state" not in exc.details:
                raise
            body = error_body("NOT_FOUND", exc.message)
            body["error"].update(state=exc.details["state"], retryable=exc.details["retryable"])
            return JSONResponse(body, status_code=404, headers={"Cache-Control": "no-store"})
        return await blob_response(request, ctx, info, WAVEFORM_MIME)

    async def original(request: Request) -> Response:
        track = await load_track(ctx, request.path_params["track_id"])
        info = await ctx.library.stream(track.id, original=True)
        redirect = await redirect_if_signed(ctx, info)
        if redirect is not None:
            return redirect
        response = await blob_response(request, ctx, info, track.audio.mime_type)
        name = track.source.original_filename or f"{track.id}.{track.audio.format or 'bin'}"
        response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
        return response

    return [
        Route("/audio/{track_id}/waveform.json", waveform, methods=["GET", "HEAD"], name="waveform"),
        Route("/audio/{track_id}/original", original, methods=["GET", "HEAD"], name="original"),
    ]
