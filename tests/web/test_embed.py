"""The embed page: what unfurlers read (checked with a real extractor), size, escaping, framing."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import extruct
import httpx
import pytest
from PIL import Image

from loist.web.assets import csp_hash
from loist.web.security import DEFAULT_CSP
from tests.web.conftest import BASE_URL, TRICKY_ARTIST, TRICKY_TITLE, WebWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")


class HeadParser(HTMLParser):
    """Collect <meta name/property> and <link> tags, and every URL-bearing attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.links: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "meta" and ("property" in a or "name" in a):
            self.meta[a.get("property") or a["name"]] = a.get("content", "")
        if tag == "link":
            self.links.append(a)
        for key in ("src", "href"):
            if key in a:
                self.urls.append(a[key])


def parse(html: str) -> HeadParser:
    p = HeadParser()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def art_url(world: WebWorld) -> str:
    return f"/embed/{world.with_art.id}"


async def test_opengraph_read_by_extruct(client: httpx.AsyncClient, world: WebWorld, art_url: str) -> None:
    r = await client.get(art_url)
    assert r.status_code == 200
    data = extruct.extract(r.text, base_url=BASE_URL + "/", syntaxes=["opengraph"], uniform=True)
    og = data["opengraph"][0]
    tid = world.with_art.id
    assert og["@type"] == "music.song"  # og:type, as extruct reports it
    assert og["og:title"] == TRICKY_TITLE
    assert TRICKY_ARTIST in og["og:description"]
    assert og["og:url"] == f"{BASE_URL}/embed/{tid}"
    assert og["og:image"] == f"{BASE_URL}/audio/{tid}/thumbnail"
    assert og["og:audio"] == f"{BASE_URL}/audio/{tid}/stream"
    assert og["og:audio:type"] == "audio/mpeg"
    assert og["music:duration"] == "3"
    # the same facts are visible as RDFa (what some crawlers use)
    rdfa = extruct.extract(r.text, base_url=BASE_URL + "/", syntaxes=["rdfa"])["rdfa"]
    audio = [item["http://ogp.me/ns#audio"][0]["@value"] for item in rdfa if "http://ogp.me/ns#audio" in item]
    assert audio == [og["og:audio"]]


async def test_twitter_player_card(client: httpx.AsyncClient, world: WebWorld, art_url: str) -> None:
    meta = parse((await client.get(art_url)).text).meta
    tid = world.with_art.id
    assert meta["twitter:card"] == "player"
    assert meta["twitter:player"] == f"{BASE_URL}/embed/{tid}"
    assert int(meta["twitter:player:width"]) >= 300 and int(meta["twitter:player:height"]) > 0
    assert meta["twitter:player:stream"] == f"{BASE_URL}/audio/{tid}/stream"
    assert meta["twitter:image"] == f"{BASE_URL}/audio/{tid}/thumbnail"


async def test_advertised_image_size_is_the_real_thumbnail_size(
    client: httpx.AsyncClient, world: WebWorld, art_url: str
) -> None:
    meta = parse((await client.get(art_url)).text).meta
    jpeg = (await client.get(f"/audio/{world.with_art.id}/thumbnail")).content
    with Image.open(io.BytesIO(jpeg)) as image:
        assert (int(meta["og:image:width"]), int(meta["og:image:height"])) == image.size


async def test_oembed_discovery_links(client: httpx.AsyncClient, world: WebWorld, art_url: str) -> None:
    page = parse((await client.get(art_url)).text)
    alternates = {link["type"]: link["href"] for link in page.links if link.get("rel") == "alternate"}
    assert set(alternates) == {"application/json+oembed", "text/xml+oembed"}
    for kind, href in alternates.items():
        assert href.startswith(f"{BASE_URL}/oembed?")
        query = parse_qs(urlsplit(href).query)
        assert query["url"] == [f"{BASE_URL}/embed/{world.with_art.id}"]
        assert query["format"] == ["json" if "json" in kind else "xml"]
        r = await client.get(href.removeprefix(BASE_URL))
        assert r.status_code == 200


async def test_head_within_32kb_and_page_under_10kb(client: httpx.AsyncClient, art_url: str) -> None:
    body = (await client.get(art_url)).content
    assert len(body) < 10 * 1024
    head_end = body.index(b"</head>")
    assert head_end < 32 * 1024
    for tag in (b"og:audio", b"twitter:player", b"application/json+oembed"):
        assert body.index(tag) < head_end


async def test_no_external_assets(client: httpx.AsyncClient, world: WebWorld, art_url: str) -> None:
    page = parse((await client.get(art_url)).text)
    tags = {tag for tag, _ in page.tags}
    assert "audio" in tags and "svg" in tags
    scripts = [a for t, a in page.tags if t == "script"]
    assert scripts and all("src" not in a for a in scripts)  # inline only
    assert not [a for t, a in page.tags if t == "link" and a.get("rel") == "stylesheet"]
    # every fetched resource is one of our stable URLs
    fetched = [a["src"] for t, a in page.tags if t in ("audio", "img", "script") and "src" in a]
    assert fetched and all(u.startswith(f"{BASE_URL}/audio/{world.with_art.id}/") for u in fetched)


async def test_player_controls_present(client: httpx.AsyncClient, art_url: str) -> None:
    html = (await client.get(art_url)).text
    for element_id in ("play", "seek", "cur", "dur", "vol"):
        assert f'id="{element_id}"' in html
    assert ">0:03<" in html  # the known duration, before any script runs
    for key in ('"ArrowLeft"', '"ArrowRight"', '"ArrowUp"', '"ArrowDown"', '" "'):
        assert key in html  # keyboard: space and arrows
    assert "@media (max-width:380px)" in html  # responsive down to 300 px


async def test_everything_is_escaped(client: httpx.AsyncClient, art_url: str) -> None:
    html = (await client.get(art_url)).text
    assert '<script>alert("x")</script>' not in html
    assert html.count("<script") == 1  # only our own (hash-allowed) script
    assert "</title><script>" not in html
    assert "&lt;b&gt;Sons&lt;/b&gt;" in html
    page = parse(html)
    assert page.meta["og:title"] == TRICKY_TITLE  # round-trips exactly through the escaping


async def test_embed_csp_and_framing(client: httpx.AsyncClient, art_url: str) -> None:
    r = await client.get(art_url)
    csp = r.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in (x.strip() for x in csp.split(";")) if d}
    assert directives["frame-ancestors"] == ["*"]
    assert directives["default-src"] == ["'none'"]
    assert "x-frame-options" not in r.headers
    # inline code runs only because its exact bytes are hashed into the policy
    script = re.search(r"<script>(.*?)</script>", r.text, re.S)
    style = re.search(r"<style>(.*?)</style>", r.text, re.S)
    assert script and style
    assert directives["script-src"] == [csp_hash(script.group(1))]
    assert csp_hash(style.group(1)) in directives["style-src"]
    assert "'unsafe-inline'" not in csp


async def test_frame_ancestors_is_configurable(world: WebWorld, tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.web.conftest import app_client

    settings = world.settings.model_copy(update={"frame_ancestors": "https://www.notion.so https://*.slack.com"})
    async with app_client(settings, world.library) as c:
        r = await c.get(f"/embed/{world.plain.id}")
    assert "frame-ancestors https://www.notion.so https://*.slack.com" in r.headers["content-security-policy"]


async def test_placeholder_artwork_when_none(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.get(f"/embed/{world.plain.id}")
    page = parse(r.text)
    assert page.meta["og:image"] == f"{BASE_URL}/static/artwork.png"
    assert "<img" not in r.text  # inline SVG placeholder instead
    png = await client.get("/static/artwork.png")
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.meta["og:audio:type"] == "audio/ogg"


@pytest.mark.parametrize("track_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "%3Cscript%3E"])
async def test_unknown_track_is_an_html_404(client: httpx.AsyncClient, track_id: str) -> None:
    r = await client.get(f"/embed/{track_id}")
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("text/html")
    assert "Track not found" in r.text
    assert "<script>" not in r.text


async def test_other_pages_deny_framing(client: httpx.AsyncClient) -> None:
    for path in ("/health/live", "/oembed?url=x", "/no-such-page", "/.well-known/oembed.json"):
        r = await client.get(path)
        assert r.headers["content-security-policy"] == DEFAULT_CSP, path
        assert r.headers["x-frame-options"] == "DENY", path


async def test_head_request(client: httpx.AsyncClient, art_url: str) -> None:
    r = await client.head(art_url)
    assert r.status_code == 200 and r.content == b""


async def test_rendered_pages_are_cached_briefly(client: httpx.AsyncClient, world: WebWorld) -> None:
    """A tag edit shows once the short page cache expires (cleared here instead of waiting)."""
    from loist.web.app import create_app

    app = create_app(world.settings, world.library)
    ctx = app.state.web
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as c:
        before = await c.get(f"/embed/{world.plain.id}")
        await world.library.update_tags(world.plain.id, {"album": "Freshly Edited"})
        try:
            cached = await c.get(f"/embed/{world.plain.id}")
            assert cached.content == before.content and "Freshly Edited" not in cached.text
            ctx.pages.clear()
            fresh = await c.get(f"/embed/{world.plain.id}")
            assert "Freshly Edited" in fresh.text
        finally:
            await world.library.update_tags(world.plain.id, {"album": None})
