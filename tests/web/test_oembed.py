"""oEmbed 1.0, checked against the spec (https://oembed.com, sections 2.3.4 and 2.3.4.4 'rich')."""

from __future__ import annotations

import xml.etree.ElementTree as ET  # noqa: S405 - parsing our own response in a test
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest

from tests.web.conftest import BASE_URL, TRICKY_ARTIST, TRICKY_TITLE, WebWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")

# spec: name -> type, for the fields a `rich` response may carry
SPEC_FIELDS: dict[str, type] = {
    "type": str, "version": str, "title": str, "author_name": str, "author_url": str,
    "provider_name": str, "provider_url": str, "cache_age": int, "thumbnail_url": str,
    "thumbnail_width": int, "thumbnail_height": int, "html": str, "width": int, "height": int,
}
REQUIRED_RICH = {"type", "version", "html", "width", "height"}


def check_spec(data: dict[str, Any], maxwidth: int | None = None, maxheight: int | None = None) -> None:
    """Assert a response obeys the oEmbed spec for type=rich."""
    assert REQUIRED_RICH <= set(data), f"missing {REQUIRED_RICH - set(data)}"
    assert data["type"] == "rich" and data["version"] == "1.0"
    for key, value in data.items():
        if key in SPEC_FIELDS:
            assert isinstance(value, SPEC_FIELDS[key]) and not isinstance(value, bool), key
    thumbs = {"thumbnail_url", "thumbnail_width", "thumbnail_height"} & set(data)
    assert thumbs in (set(), {"thumbnail_url", "thumbnail_width", "thumbnail_height"}), "thumbnail fields go together"
    assert data["width"] > 0 and data["height"] > 0
    if maxwidth is not None:
        assert data["width"] <= maxwidth
    if maxheight is not None:
        assert data["height"] <= maxheight


class IframeParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.iframes: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe":
            self.iframes.append({k: v or "" for k, v in attrs})


def iframe_of(html: str) -> dict[str, str]:
    parser = IframeParser()
    parser.feed(html)
    assert len(parser.iframes) == 1
    return parser.iframes[0]


def embed(world: WebWorld, plain: bool = False) -> str:
    return f"{BASE_URL}/embed/{(world.plain if plain else world.with_art).id}"


async def test_json_response_follows_spec(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.get("/oembed", params={"url": embed(world)})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    data = r.json()
    check_spec(data)
    tid = world.with_art.id
    assert data["title"] == TRICKY_TITLE
    assert data["author_name"] == TRICKY_ARTIST
    assert data["provider_url"] == f"{BASE_URL}/"
    assert data["thumbnail_url"] == f"{BASE_URL}/audio/{tid}/thumbnail"
    assert data["cache_age"] > 0
    frame = iframe_of(data["html"])
    assert frame["src"] == embed(world)
    assert int(frame["width"]) == data["width"] and int(frame["height"]) == data["height"]
    assert frame["title"] == TRICKY_TITLE  # escaped in the attribute, exact once parsed
    assert "<script" not in data["html"]


@pytest.mark.parametrize(("maxwidth", "maxheight"), [(300, None), (None, 100), (320, 120), (2000, 2000), (200, 50)])
async def test_size_obeys_maximums(client: httpx.AsyncClient, world: WebWorld, maxwidth: int | None,
                                   maxheight: int | None) -> None:
    params: dict[str, Any] = {"url": embed(world)}
    if maxwidth:
        params["maxwidth"] = maxwidth
    if maxheight:
        params["maxheight"] = maxheight
    data = (await client.get("/oembed", params=params)).json()
    check_spec(data, maxwidth, maxheight)
    frame = iframe_of(data["html"])
    assert (int(frame["width"]), int(frame["height"])) == (data["width"], data["height"])


async def test_xml_response_follows_spec(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.get("/oembed", params={"url": embed(world), "format": "xml", "maxwidth": "400"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(r.content)  # noqa: S314 - well-formedness is what we test
    assert root.tag == "oembed"
    data: dict[str, Any] = {}
    for child in root:
        value: Any = child.text or ""
        if SPEC_FIELDS.get(child.tag) is int:
            value = int(value)
        data[child.tag] = value
    check_spec(data, maxwidth=400)
    json_data = (await client.get("/oembed", params={"url": embed(world), "maxwidth": "400"})).json()
    assert data == json_data  # same fields and values in both formats


async def test_no_artwork_means_no_thumbnail_fields(client: httpx.AsyncClient, world: WebWorld) -> None:
    data = (await client.get("/oembed", params={"url": embed(world, plain=True)})).json()
    check_spec(data)
    assert "thumbnail_url" not in data


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"url": f"{BASE_URL}/embed/00000000-0000-4000-8000-000000000000"}, 404, "NOT_FOUND"),
        ({"url": f"{BASE_URL}/embed/not-a-uuid"}, 404, "NOT_FOUND"),
        ({"url": "https://evil.example/embed/00000000-0000-4000-8000-000000000000"}, 400, "INVALID_ARGUMENT"),
        ({"url": "http://music.example.test/embed/00000000-0000-4000-8000-000000000000"}, 400, "INVALID_ARGUMENT"),
        ({"url": f"{BASE_URL}/audio/00000000-0000-4000-8000-000000000000/stream"}, 400, "INVALID_ARGUMENT"),
        ({"url": f"{BASE_URL}.evil.example/embed/00000000-0000-4000-8000-000000000000"}, 400, "INVALID_ARGUMENT"),
        ({}, 400, "INVALID_ARGUMENT"),
        ({"url": f"{BASE_URL}/embed/x", "format": "yaml"}, 501, None),
        ({"url": f"{BASE_URL}/embed/x", "maxwidth": "wide"}, 400, "INVALID_ARGUMENT"),
        ({"url": f"{BASE_URL}/embed/x", "maxheight": "-5"}, 400, "INVALID_ARGUMENT"),
    ],
)
async def test_errors(client: httpx.AsyncClient, params: dict[str, str], status: int, code: str | None) -> None:
    r = await client.get("/oembed", params=params)
    assert r.status_code == status
    body = r.json()
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code


async def test_provider_description(client: httpx.AsyncClient) -> None:
    r = await client.get("/.well-known/oembed.json")
    assert r.status_code == 200
    providers = r.json()
    assert isinstance(providers, list) and len(providers) == 1
    endpoint = providers[0]["endpoints"][0]
    assert endpoint["url"] == f"{BASE_URL}/oembed"
    assert endpoint["schemes"] == [f"{BASE_URL}/embed/*"]
    assert endpoint["discovery"] is True
    assert providers[0]["provider_url"] == f"{BASE_URL}/"


async def test_cors_for_allowed_origin(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.get("/oembed", params={"url": embed(world)}, headers={"Origin": "https://notion.example"})
    assert r.headers["access-control-allow-origin"] == "https://notion.example"
    other = await client.get("/oembed", params={"url": embed(world)}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
