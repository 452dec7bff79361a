"""oEmbed 1.0 (https://oembed.com): ``GET /oembed`` and the ``/.well-known/oembed.json`` provider file.

The response is type ``rich``: an ``<iframe>`` of the embed page, sized to the player but never
larger than ``maxwidth``/``maxheight``. Only URLs under our own ``EMBED_BASE_URL`` are accepted
(400 otherwise); an unknown track is 404 and a format other than json/xml is 501, as the spec
asks. Thumbnails point at the stable ``/audio/{id}/thumbnail`` URL, never a signed one, because
consumers cache the answer for ``cache_age`` seconds.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from markupsafe import escape as html_escape
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loist.errors import InvalidArgument, NotFound
from loist.web.context import WebContext
from loist.web.embed import PLAYER_HEIGHT, PLAYER_WIDTH, load_track, track_view
from loist.web.errors import error_json

CACHE_AGE_S = 3600
MIN_SIZE = 1


def _dimension(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be a positive integer, got {raw[:32]!r}") from None
    if value < MIN_SIZE:
        raise InvalidArgument(f"{name} must be a positive integer, got {value}")
    return value


def embed_track_id(ctx: WebContext, url: str) -> str:
    """The track id in one of our embed URLs; InvalidArgument for any URL that is not ours."""
    base = urlsplit(ctx.base_url)
    given = urlsplit(url.strip())
    same_origin = given.scheme.lower() == base.scheme.lower() and given.netloc.lower() == base.netloc.lower()
    prefix = base.path.rstrip("/") + "/embed/"
    if not same_origin or not given.path.startswith(prefix):
        raise InvalidArgument(f"not a URL this server embeds (expected {ctx.base_url}/embed/<id>)")
    track_id = given.path[len(prefix):].strip("/")
    if not track_id or "/" in track_id:
        raise InvalidArgument(f"not a URL this server embeds (expected {ctx.base_url}/embed/<id>)")
    return track_id


def fit(maxwidth: int | None, maxheight: int | None) -> tuple[int, int]:
    """The player size, clamped to the consumer's maximum (the page is responsive to 300 px)."""
    width = min(PLAYER_WIDTH, maxwidth) if maxwidth else PLAYER_WIDTH
    height = min(PLAYER_HEIGHT, maxheight) if maxheight else PLAYER_HEIGHT
    return width, height


def _to_xml(data: dict[str, Any]) -> str:
    fields = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in data.items())
    return f'<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n<oembed>{fields}</oembed>\n'


async def render(ctx: WebContext, track_id: str, width: int, height: int, fmt: str) -> bytes:
    try:
        track = await load_track(ctx, track_id)
    except NotFound:
        raise NotFound("no track at that URL") from None
    view = track_view(ctx, track)
    iframe = (
        f'<iframe src="{html_escape(view.embed_url)}" width="{width}" height="{height}" '
        f'title="{html_escape(view.title)}" frameborder="0" scrolling="no" loading="lazy" '
        f'allow="autoplay; encrypted-media" style="border:0;max-width:100%"></iframe>'
    )
    data: dict[str, Any] = {
        "version": "1.0",
        "type": "rich",
        "html": iframe,
        "width": width,
        "height": height,
        "title": view.title,
    }
    if view.artist:
        data["author_name"] = view.artist
    data["provider_name"] = ctx.site_name
    data["provider_url"] = ctx.base_url + "/"
    data["cache_age"] = CACHE_AGE_S
    if view.thumbnail_url:
        data.update(thumbnail_url=view.thumbnail_url, thumbnail_width=view.image_width,
                    thumbnail_height=view.image_height)
    if fmt == "xml":
        return _to_xml(data).encode("utf-8")
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def routes(ctx: WebContext) -> list[Route]:
    async def oembed(request: Request) -> Response:
        fmt = request.query_params.get("format", "json").lower()
        if fmt not in ("json", "xml"):
            return error_json(501, "INVALID_ARGUMENT", f"format {fmt[:16]!r} is not supported (json or xml)")
        url = request.query_params.get("url")
        if not url:
            raise InvalidArgument("the url parameter is required")
        track_id = embed_track_id(ctx, url)
        width, height = fit(_dimension(request, "maxwidth"), _dimension(request, "maxheight"))
        key = ("oembed", fmt, track_id, str(width), str(height))
        body = ctx.pages.get(key)
        if body is None:
            body = await render(ctx, track_id, width, height, fmt)
            ctx.pages.put(key, body)
        media_type = "text/xml; charset=utf-8" if fmt == "xml" else "application/json"
        return Response(body, media_type=media_type, headers={"Cache-Control": f"public, max-age={CACHE_AGE_S}"})

    async def provider(request: Request) -> Response:
        base = ctx.base_url
        body = [
            {
                "provider_name": ctx.site_name,
                "provider_url": base + "/",
                "endpoints": [
                    {
                        "schemes": [f"{base}/embed/*"],
                        "url": f"{base}/oembed",
                        "formats": ["json", "xml"],
                        "discovery": True,
                    }
                ],
            }
        ]
        return JSONResponse(body, headers={"Cache-Control": "public, max-age=86400"})

    return [
        Route("/oembed", oembed, methods=["GET", "HEAD"], name="oembed"),
        Route("/.well-known/oembed.json", provider, methods=["GET", "HEAD"], name="oembed_provider"),
    ]
