"""``GET /embed/{id}``: the shareable player page, and the metadata unfurlers read from it.

The page is server-rendered, self-contained (inline CSS/JS allowed by CSP hashes, inline SVG
icons; nothing external) and small (< 10 KB). Rendered pages are cached for a few seconds
(:mod:`loist.web.cache`). Its ``<head>`` carries oEmbed discovery links and
the Open Graph / Twitter player tags, all built from ``EMBED_BASE_URL`` and pointing at the stable
``/audio/{id}/...`` URLs, never at an expiring signed URL. Its ``Content-Security-Policy`` sets
``frame-ancestors`` from ``FRAME_ANCESTORS`` so the page can be framed where configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loist.model import Track, parse_track_id
from loist.web.context import WebContext
from loist.web.security import embed_csp, origin_of

PLAYER_WIDTH = 480  # the iframe size we advertise (oEmbed, twitter:player)
PLAYER_HEIGHT = 160
THUMBNAIL_BOX = 600  # ingest fits artwork thumbnails inside 600x600 (a test checks the real JPEG)
PLACEHOLDER_SIZE = 300  # static/artwork.png
EMBED_CACHE_CONTROL = "public, max-age=60"  # identical for everyone; edits show within a minute


@dataclass(frozen=True)
class TrackView:
    """Everything the embed page and oEmbed say about a track, already as display strings/URLs."""

    id: str
    title: str
    artist: str | None
    album: str | None
    description: str
    duration_s: float | None
    mime_type: str
    embed_url: str
    stream_url: str
    thumbnail_url: str | None
    image_url: str  # thumbnail, or the static placeholder artwork
    image_width: int
    image_height: int

    @property
    def duration_label(self) -> str:
        return format_duration(self.duration_s)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def thumbnail_size(track: Track) -> tuple[int, int]:
    """The thumbnail's pixel size, derived from the original artwork's (fit inside the box, no upscaling)."""
    width, height = track.artwork.width, track.artwork.height
    if not width or not height:
        return THUMBNAIL_BOX, THUMBNAIL_BOX
    scale = min(1.0, THUMBNAIL_BOX / width, THUMBNAIL_BOX / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def track_view(ctx: WebContext, track: Track) -> TrackView:
    lib = ctx.library
    tags = track.tags
    title = tags.title or track.source.original_filename or "Untitled track"
    parts = [p for p in (tags.artist, tags.album, str(tags.year) if tags.year else None) if p]
    if track.audio.duration_s is not None:
        parts.append(format_duration(track.audio.duration_s))
    thumb = lib.thumbnail_url(track)
    image_w, image_h = thumbnail_size(track) if thumb else (PLACEHOLDER_SIZE, PLACEHOLDER_SIZE)
    return TrackView(
        id=str(track.id),
        title=title,
        artist=tags.artist,
        album=tags.album,
        description=" · ".join(parts) or "Listen to this track",
        duration_s=track.audio.duration_s,
        mime_type=track.audio.mime_type or "application/octet-stream",
        embed_url=lib.embed_url(track.id),
        stream_url=lib.stream_url(track.id),
        thumbnail_url=thumb,
        image_url=thumb or f"{ctx.base_url}/static/artwork.png",
        image_width=image_w,
        image_height=image_h,
    )


async def load_track(ctx: WebContext, raw_id: str) -> Track:
    """The track behind a public URL; only completed tracks are public."""
    return await ctx.library.get_playable(parse_track_id(raw_id))


async def _note_signed_origin(ctx: WebContext, track: Track) -> None:
    """Allow the signed-URL host (GCS) in the page's media-src, learnt once from a real signed URL."""
    if ctx.settings.storage_backend != "gcs" or ctx.extra_media_origins or not track.blob_key:
        return
    url = await run_in_threadpool(ctx.library.signed_url, track.blob_key)
    if url:
        ctx.extra_media_origins.add(origin_of(url))


def render_page(ctx: WebContext, track: Track) -> bytes:
    view = track_view(ctx, track)
    oembed = f"{ctx.base_url}/oembed?url={quote(view.embed_url, safe='')}"
    html = ctx.templates.get_template("embed.html").render(
        t=view,
        css=ctx.assets.player_css,
        js=ctx.assets.player_js,
        oembed_json=f"{oembed}&format=json",
        oembed_xml=f"{oembed}&format=xml",
        width=PLAYER_WIDTH,
        height=PLAYER_HEIGHT,
        site_name=ctx.site_name,
    )
    return html.encode("utf-8")


def routes(ctx: WebContext) -> list[Route]:
    async def embed(request: Request) -> Response:
        raw_id: str = request.path_params["track_id"]
        key = ("embed", raw_id)
        body = ctx.pages.get(key)
        if body is None:
            track = await load_track(ctx, raw_id)
            await _note_signed_origin(ctx, track)
            body = render_page(ctx, track)
            ctx.pages.put(key, body)
        headers = {"Content-Security-Policy": embed_csp(ctx), "Cache-Control": EMBED_CACHE_CONTROL}
        return Response(body, media_type="text/html; charset=utf-8", headers=headers)

    return [Route("/embed/{track_id}", embed, methods=["GET", "HEAD"], name="embed")]
