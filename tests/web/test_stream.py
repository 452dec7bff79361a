"""Byte serving: Range, validators, conditional requests and HEAD on both storage backends,
and the GCS redirect to a signed URL."""

from __future__ import annotations

import logging
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest

from loist.web.security import DEFAULT_CSP
from tests.web.conftest import WebWorld

pytestmark = pytest.mark.asyncio(loop_scope="module")


# --- both backends -----------------------------------------------------------------------------
@pytest.fixture(scope="module", params=["local", "gcs"])
def backend(request: pytest.FixtureRequest) -> tuple[WebWorld, httpx.AsyncClient]:
    """(world, client) for each storage backend; the emulator cannot sign, so both serve bytes."""
    if request.param == "local":
        return request.getfixturevalue("world"), request.getfixturevalue("client")
    return request.getfixturevalue("gcs_world"), request.getfixturevalue("gcs_client_http")


def _file(world: WebWorld) -> bytes:
    return Path(world.with_art_path).read_bytes()


async def test_full_body_and_headers(backend: tuple[WebWorld, httpx.AsyncClient]) -> None:
    world, client = backend
    data = _file(world)
    r = await client.get(f"/audio/{world.with_art.id}/stream")
    assert r.status_code == 200
    assert r.content == data
    assert r.headers["content-length"] == str(len(data))
    assert r.headers["content-type"] == "audio/mpeg"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["etag"].startswith('"') and r.headers["etag"].endswith('"')
    assert r.headers["last-modified"].endswith("GMT")


@pytest.mark.parametrize(
    ("range_header", "slice_"),
    [
        ("bytes=0-99", slice(0, 100)),  # first bytes
        ("bytes=1000-1999", slice(1000, 2000)),  # middle
        ("bytes=100-", slice(100, None)),  # open-ended
        ("bytes=-500", slice(-500, None)),  # suffix
    ],
)
async def test_single_ranges(backend: tuple[WebWorld, httpx.AsyncClient], range_header: str, slice_: slice) -> None:
    world, client = backend
    data = _file(world)
    r = await client.get(f"/audio/{world.with_art.id}/stream", headers={"Range": range_header})
    expected = data[slice_]
    start = slice_.start if slice_.start >= 0 else len(data) + slice_.start
    assert r.status_code == 206
    assert r.content == expected
    assert r.headers["content-length"] == str(len(expected))
    assert r.headers["content-range"] == f"bytes {start}-{start + len(expected) - 1}/{len(data)}"


async def test_unsatisfiable_range(backend: tuple[WebWorld, httpx.AsyncClient]) -> None:
    world, client = backend
    size = len(_file(world))
    r = await client.get(f"/audio/{world.with_art.id}/stream", headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{size}"
    assert r.json()["error"]["code"] == "INVALID_ARGUMENT"


async def test_multi_range_gets_full_body(backend: tuple[WebWorld, httpx.AsyncClient]) -> None:
    world, client = backend
    r = await client.get(f"/audio/{world.with_art.id}/stream", headers={"Range": "bytes=0-1,10-20"})
    assert r.status_code == 200
    assert r.content == _file(world)


@pytest.mark.parametrize("route", ["stream", "thumbnail"])
@pytest.mark.parametrize(
    ("range_header", "status"),
    [
        ("bytes=²-", 200),  # ignored (RFC 9110 14.2): not ASCII digits
        ("bytes=0-¹", 200),
        ("bytes=-³", 200),
        (f"bytes={'9' * 5000}-", 416),  # well-formed, starts past the end
        (f"bytes=0-{'9' * 5000}", 206),  # well-formed, end clamped: the whole blob
        (f"bytes=-{'9' * 5000}", 206),
    ],
    ids=["superscript-start", "superscript-end", "superscript-suffix", "huge-start", "huge-end", "huge-suffix"],
)
async def test_malformed_ranges_are_ignored_or_416_never_500(
    backend: tuple[WebWorld, httpx.AsyncClient], caplog: pytest.LogCaptureFixture, route: str, range_header: str,
    status: int,
) -> None:
    world, client = backend
    url = f"/audio/{world.with_art.id}/{route}"
    whole = (await client.get(url)).content
    with caplog.at_level(logging.INFO):
        r = await client.get(url, headers={"Range": range_header.encode("latin-1")})  # as a client sends it
    assert r.status_code == status
    if status in (200, 206):
        assert r.content == whole
    else:
        assert r.headers["content-range"] == f"bytes */{len(whole)}"
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


async def test_conditional_requests(backend: tuple[WebWorld, httpx.AsyncClient]) -> None:
    world, client = backend
    url = f"/audio/{world.with_art.id}/stream"
    first = await client.head(url)
    etag, modified = first.headers["etag"], first.headers["last-modified"]

    r = await client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert (await client.get(url, headers={"If-None-Match": f'"other", W/{etag}'})).status_code == 304
    assert (await client.get(url, headers={"If-None-Match": '"other"'})).status_code == 200
    assert (await client.get(url, headers={"If-Modified-Since": modified})).status_code == 304
    assert (await client.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"})).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110 13.2.2)
    r = await client.get(url, headers={"If-None-Match": '"other"', "If-Modified-Since": modified})
    assert r.status_code == 200


async def test_if_range(backend: tuple[WebWorld, httpx.AsyncClient]) -> None:
    world, client = backend
    url = f"/audio/{world.with_art.id}/stream"
    head = await client.head(url)
    etag, modified = head.headers["etag"], head.headers["last-modified"]
    current = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert current.status_code == 206 and len(current.content) == 10
    by_date = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": modified})
    assert by_date.status_code == 206
    stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert stale.status_code == 200 and stale.content == _file(world)
    old_date = format_datetime(__import__("datetime").datetime(2001, 1, 1, tzinfo=__import__("datetime").UTC),
                               usegmt=True)
    assert (await client.get(url, headers={"Range": "bytes=0-9", "If-Range": old_date})).status_code == 200


async def test_head_has_headers_and_no_body(backend: tuple[WebWorld, httpx.AsyncClient]) -> None:
    world, client = backend
    size = len(_file(world))
    r = await client.head(f"/audio/{world.with_art.id}/stream")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(size)
    r = await client.head(f"/audio/{world.with_art.id}/stream", headers={"Range": "bytes=0-9"})
    assert r.status_code == 206 and r.headers["content-length"] == "10" and r.content == b""


async def test_thumbnail(backend: tuple[WebWorld, httpx.AsyncClient]) -> None:
    world, client = backend
    r = await client.get(f"/audio/{world.with_art.id}/thumbnail")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content[:3] == b"\xff\xd8\xff"  # a JPEG
    partial = await client.get(f"/audio/{world.with_art.id}/thumbnail", headers={"Range": "bytes=0-1"})
    assert partial.status_code == 206 and partial.content == b"\xff\xd8"
    missing = await client.get(f"/audio/{world.plain.id}/thumbnail")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("path", ["stream", "thumbnail"])
@pytest.mark.parametrize("track_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "1%27%20OR%201=1"])
async def test_unknown_or_invalid_ids_are_404(client: httpx.AsyncClient, path: str, track_id: str) -> None:
    r = await client.get(f"/audio/{track_id}/{path}")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "NOT_FOUND"


async def test_media_responses_deny_framing(client: httpx.AsyncClient, world: WebWorld) -> None:
    r = await client.get(f"/audio/{world.plain.id}/stream", headers={"Range": "bytes=0-0"})
    assert r.headers["content-security-policy"] == DEFAULT_CSP
    assert r.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(
    "range_header",
    [None, "bytes=0-", "bytes=100-", "bytes=-1500000", "bytes=1048000-2200000", "bytes=1048576-1048576"],
)
async def test_bodies_larger_than_one_batch(backend: tuple[WebWorld, httpx.AsyncClient],
                                            range_header: str | None) -> None:
    """Bodies over 1 MiB are streamed batch by batch; every byte still matches the file."""
    from loist.web.stream import BATCH_BYTES, parse_range

    world, client = backend
    data = Path(world.big_path).read_bytes()
    assert len(data) > 2 * BATCH_BYTES
    headers = {"Range": range_header} if range_header else {}
    r = await client.get(f"/audio/{world.big.id}/stream", headers=headers)
    wanted = parse_range(range_header, len(data))
    expected = data if wanted is None else data[wanted.start:wanted.end + 1]
    assert r.status_code == (200 if wanted is None else 206)
    assert r.headers["content-length"] == str(len(expected))
    assert r.content == expected
    assert r.headers["content-type"] in ("audio/wav", "audio/x-wav", "audio/wave")


async def test_page_cache_miss_is_read_in_a_worker_thread(client: httpx.AsyncClient, world: WebWorld,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Small ranges are read inline only when cached (``nowait``); a miss is read again off the loop."""
    import threading

    store = world.library.store
    real = store.read_range
    calls: list[tuple[bool, bool]] = []

    def read_range(key: str, start: int, end: int, *, nowait: bool = False) -> bytes | bytearray | None:
        calls.append((nowait, threading.current_thread() is threading.main_thread()))
        return None if nowait else real(key, start, end)

    monkeypatch.setattr(store, "read_range", read_range)
    r = await client.get(f"/audio/{world.plain.id}/stream", headers={"Range": "bytes=100-199"})
    assert r.status_code == 206 and r.content == Path(world.plain_path).read_bytes()[100:200]
    assert calls == [(True, True), (False, False)]  # inline attempt on the loop, then a worker thread


async def test_blob_deleted_behind_the_cache_is_404(world: WebWorld, client: httpx.AsyncClient,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The stat is cached for a few seconds, but every small range still opens the blob: gone is 404."""
    from loist.errors import NotFound

    path = f"/audio/{world.plain.id}/stream"
    assert (await client.get(path, headers={"Range": "bytes=0-9"})).status_code == 206  # stat now cached

    def gone(key: str, start: int, end: int, *, nowait: bool = False) -> bytes:
        raise NotFound(f"blob {key!r} not found")

    monkeypatch.setattr(world.library.store, "read_range", gone)
    r = await client.get(path, headers={"Range": "bytes=0-9"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
