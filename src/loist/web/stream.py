"""``/audio/{id}/stream`` and ``/audio/{id}/thumbnail``: the one place that serves blob bytes.

Both routes end in :func:`blob_response`, which holds all of the HTTP byte-serving rules: single
``Range`` requests (206 + ``Content-Range``), unsatisfiable ranges (416 + ``Content-Range: bytes
*/size``), validators (``ETag``, ``Last-Modified``), conditional requests (``If-None-Match``,
``If-Modified-Since`` -> 304; ``If-Range``) and ``HEAD``. Multi-range requests are answered with
the whole body (200), which RFC 9110 allows. A body of up to 1 MiB (:data:`BATCH_BYTES`) is one
``read_blob`` (inline when the bytes are in the page cache, else in a storage thread); a longer one
is streamed from ``iter_blob`` in a storage thread, at most 1 MiB at a time: a file is never held in
memory. Every blocking store call goes through the library's storage pool
(:mod:`loist.library.storage_pool`), never Starlette's thread pool, so streams waiting on a slow
store cannot starve the health check or the pages.

When the store can mint signed URLs (GCS), the route answers ``302`` to a fresh one instead, with
``Cache-Control: no-store`` on the redirect so nobody caches an expiring URL; the browser then sends
its ``Range`` straight to the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from loist.model import parse_track_id
from loist.storage.base import BlobInfo
from loist.web.context import WebContext
from loist.web.errors import error_body

CACHE_CONTROL = "public, max-age=300"
BATCH_BYTES = 1024 * 1024  # bytes pulled from the store per worker-thread hop


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1


class RangeNotSatisfiable(Exception):
    """The Range header is well-formed but no byte of it lies inside the blob."""


# A byte position longer than this many significant digits is beyond any blob (10**18 bytes is an
# exabyte): it is compared as "huge" instead of being converted (``int()`` refuses strings of more
# than 4,300 digits, and converting long ones costs quadratic time).
MAX_POSITION_DIGITS = 18
_ASCII_DIGITS = frozenset("0123456789")
_HTTP_WHITESPACE = " \t"


def _position(text: str) -> int | None:
    """A byte position from a Range header: ASCII digits only (``"²".isdigit()`` is True, but it is
    not a number HTTP knows). None when ``text`` is not one; a number too long to matter is capped
    just above :data:`MAX_POSITION_DIGITS` digits, which no blob size reaches."""
    if not text or not _ASCII_DIGITS.issuperset(text):
        return None
    significant = text.lstrip("0")
    if len(significant) > MAX_POSITION_DIGITS:
        return 10**MAX_POSITION_DIGITS
    return int(significant or "0")


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range a ``Range`` header asks for, or None to serve the whole blob.

    None for: no header, a unit other than bytes, malformed syntax (ignored, per RFC 9110 section
    14.2) and multi-range requests (we answer those with the full body). Raises
    :class:`RangeNotSatisfiable` for a valid single range outside the blob. Never raises anything
    else, whatever the header holds (this is the only place Range is parsed).
    """
    if not header:
        return None
    unit, sep, spec = header.strip(_HTTP_WHITESPACE).partition("=")
    if not sep or unit.strip(_HTTP_WHITESPACE).lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip(_HTTP_WHITESPACE).partition("-")
    if not dash:
        return None
    first_text, last_text = first_text.strip(_HTTP_WHITESPACE), last_text.strip(_HTTP_WHITESPACE)
    first, last = _position(first_text), _position(last_text)
    if (first_text and first is None) or (last_text and last is None) or (first is None and last is None):
        return None
    if first is None:  # suffix: the last N bytes
        assert last is not None
        if last == 0 or size == 0:
            raise RangeNotSatisfiable
        return ByteRange(max(0, size - last), size - 1)
    if last is not None and last < first:
        return None  # syntactically invalid: ignored
    if first >= size:
        raise RangeNotSatisfiable
    end = size - 1 if last is None else min(last, size - 1)
    return ByteRange(first, end)


def _etag(info: BlobInfo) -> str:
    return f'"{info.etag}"'


def _http_date(moment: datetime) -> str:
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


def _parse_http_date(value: str) -> datetime | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo is not None else None


def _etag_listed(header: str, etag: str) -> bool:
    """Weak comparison against an ``If-None-Match`` list (``*`` matches anything)."""
    candidates = [part.strip() for part in header.split(",")]
    bare = etag.removeprefix("W/")
    return any(c == "*" or c.removeprefix("W/") == bare for c in candidates)


def _not_modified(request: Request, info: BlobInfo) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return _etag_listed(inm, _etag(info))
    ims = request.headers.get("if-modified-since")
    if ims is not None:
        since = _parse_http_date(ims)
        return since is not None and info.updated.replace(microsecond=0) <= since
    return False


def _range_applies(request: Request, info: BlobInfo) -> bool:
    """``If-Range``: honour the Range only while the client's copy is still current."""
    if_range = request.headers.get("if-range")
    if if_range is None:
        return True
    if_range = if_range.strip()
    if if_range.startswith(('"', "W/")):
        return if_range == _etag(info)  # strong comparison; weak tags never match
    since = _parse_http_date(if_range)
    return since is not None and since == info.updated.replace(microsecond=0)


def _pull(iterator: Iterator[bytes]) -> list[bytes]:
    """Up to BATCH_BYTES of chunks from a blocking iterator (runs in a worker thread)."""
    batch: list[bytes] = []
    total = 0
    for chunk in iterator:
        batch.append(chunk)
        total += len(chunk)
        if total >= BATCH_BYTES:
            break
    return batch


async def open_body(ctx: WebContext, key: str, start: int, end: int) -> AsyncIterator[bytes]:
    """Open the blob and read its first batch *before* answering, then relay the rest.

    Opening first makes a blob that vanished a clean 404 instead of a broken 200. Each worker-thread
    hop moves up to BATCH_BYTES (a hop per 256 KiB chunk costs more than the copy on small machines);
    memory stays bounded at one batch per stream. A range of up to 1 MiB costs a single hop.
    """
    length = end - start + 1

    def open_and_pull() -> tuple[Iterator[bytes], list[bytes]]:
        iterator = ctx.library.iter_blob(key, start, end)
        return iterator, _pull(iterator)

    iterator, first = await ctx.library.storage_pool.run(open_and_pull)

    async def relay() -> AsyncIterator[bytes]:
        sent = 0
        try:
            batch = first
            while batch:
                # One body message per batch: per-message overhead (middleware, transport) is paid
                # once per MiB instead of once per store chunk; the join is a bounded copy.
                data = batch[0] if len(batch) == 1 else b"".join(batch)
                yield data
                sent += len(data)
                if sent >= length:
                    break
                batch = await ctx.library.storage_pool.run(_pull, iterator)
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                if sent >= length:
                    close()  # exhausted: closing is a no-op, no thread hop needed
                else:
                    await ctx.library.storage_pool.run(close)  # client left early: release the file/connection

    return relay()


async def blob_response(request: Request, ctx: WebContext, info: BlobInfo, content_type: str | None) -> Response:
    """Serve a blob's bytes honouring Range, validators, conditional requests and HEAD."""
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": _etag(info),
        "Last-Modified": _http_date(info.updated),
        "Cache-Control": CACHE_CONTROL,
    }
    if _not_modified(request, info):
        return Response(status_code=304, headers=headers)

    media_type = info.content_type or content_type or "application/octet-stream"
    wanted: ByteRange | None = None
    if _range_applies(request, info):
        try:
            wanted = parse_range(request.headers.get("range"), info.size)
        except RangeNotSatisfiable:
            headers["Content-Range"] = f"bytes */{info.size}"
            body = error_body("INVALID_ARGUMENT", f"range not satisfiable for a blob of {info.size} bytes")
            return JSONResponse(body, status_code=416, headers=headers)

    status = 200
    start, end = 0, info.size - 1
    if wanted is not None:
        status, start, end = 206, wanted.start, wanted.end
        headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
    headers["Content-Length"] = str(max(0, end - start + 1))

    if request.method == "HEAD" or info.size == 0:
        return Response(status_code=status, headers=headers, media_type=media_type)
    if end - start + 1 <= BATCH_BYTES:
        # Small bodies (thumbnails, the ranges players ask for while seeking): one read, one message.
        # A page-cache hit is read right here (~50 us for 1 MiB); handing it to a worker thread
        # cost more than the read (thread wake-ups, GIL hand-off) and halved the ranges per second.
        # Only a read that would wait for the disk or the network takes the thread hop.
        data = ctx.library.read_blob(info.key, start, end, nowait=True)
        if data is None:
            data = await ctx.library.storage_pool.run(ctx.library.read_blob, info.key, start, end)
        assert data is not None  # a blocking read never answers None
        body = data if isinstance(data, bytes) else memoryview(data)  # Starlette sends bytes or views
        return Response(body, status_code=status, headers=headers, media_type=media_type)
    body = await open_body(ctx, info.key, start, end)
    return StreamingResponse(body, status_code=status, headers=headers, media_type=media_type)


async def redirect_if_signed(ctx: WebContext, info: BlobInfo) -> Response | None:
    if ctx.settings.storage_backend == "local":
        return None  # local blobs are always served here (no thread hop needed to learn that)
    url = await ctx.library.storage_pool.run(ctx.library.signed_url, info.key)
    if url is None:
        return None
    return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})


async def _blob_info(ctx: WebContext, kind: str, raw_id: str) -> BlobInfo:
    """Stat of the track's audio or thumbnail blob, cached briefly (see loist.web.cache)."""
    key = (kind, raw_id)
    info = ctx.blobs.get(key)
    if info is None:
        track_id = parse_track_id(raw_id)
        if kind == "stream":
            info = await ctx.library.stream(track_id)
        else:
            info = await ctx.library.thumbnail(track_id)
        ctx.blobs.put(key, info)
    return info


def routes(ctx: WebContext) -> list[Route]:
    async def stream(request: Request) -> Response:
        info = await _blob_info(ctx, "stream", request.path_params["track_id"])
        redirect = await redirect_if_signed(ctx, info)
        if redirect is not None:
            return redirect
        return await blob_response(request, ctx, info, None)

    async def thumbnail(request: Request) -> Response:
        info = await _blob_info(ctx, "thumbnail", request.path_params["track_id"])
        redirect = await redirect_if_signed(ctx, info)
        if redirect is not None:
            return redirect
        return await blob_response(request, ctx, info, "image/jpeg")

    return [
        Route("/audio/{track_id}/stream", stream, methods=["GET", "HEAD"], name="stream"),
        Route("/audio/{track_id}/thumbnail", thumbnail, methods=["GET", "HEAD"], name="thumbnail"),
    ]
