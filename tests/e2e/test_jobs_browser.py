"""Derived audio end to end: a real server whose own background worker (``JOBS_WORKERS``) makes the
waveforms and web renditions of freshly ingested tracks, and headless Chromium playing them.

- ``waveform.json`` answers for an ingested track within a minute, in the waveform-data v2 format;
- the embed player draws it, and a click on it seeks;
- AIFF and WMA tracks, which Chromium cannot play as stored, play in the embed page from their
  AAC rendition (and their originals, as a control, do not play).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loist.config import Settings
from loist.web.app import create_app
from tests.support.audio import AudioFactory
from tests.support.cdp import browser
from tests.support.liveserver import live_server

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

READY_WITHIN_S = 60.0  # the promise: a waveform within a minute of ingest on this machine


def _settings(data_dir: Path, base_url: str = "http://127.0.0.1") -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, embed_base_url=base_url, jobs_poll_s=0.2)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, audio_factory: AudioFactory) -> Iterator[tuple[str, dict[str, str]]]:
    from loist.library.service import Library

    data_dir = tmp_path_factory.mktemp("jobs-browser")

    async def seed() -> dict[str, str]:
        async with await Library.open(_settings(data_dir)) as lib:
            ids = {}
            for fmt in ("mp3", "aiff", "wma"):
                track = await lib.ingest_file(audio_factory(fmt, tags={"title": fmt}, duration=4.0))
                ids[fmt] = str(track.id)
            return ids

    ids = asyncio.run(seed())
    with live_server(lambda base: create_app(_settings(data_dir, base), job_workers=1)) as url:
        yield url, ids


def _wait_for(url: str, *, ok: int = 200) -> httpx.Response:
    deadline = time.monotonic() + READY_WITHIN_S
    with httpx.Client(timeout=10) as client:
        while True:
            response = client.get(url)
            if response.status_code == ok:
                return response
            assert response.status_code == 404, response.text
            assert response.json()["error"]["state"] in ("queued", "running"), response.text
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not ready within {READY_WITHIN_S}s")
            time.sleep(0.1)  # the interval of a bounded poll


def _wait_for_rendition(base: str, track_id: str) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    with httpx.Client(timeout=10) as client:
        while client.head(f"{base}/audio/{track_id}/stream").headers.get("content-type") != "audio/mp4":
            if time.monotonic() > deadline:
                raise TimeoutError(f"no rendition for {track_id} within {READY_WITHIN_S}s")
            time.sleep(0.1)


def test_waveform_json_answers_within_a_minute_in_the_v2_format(served: tuple[str, dict[str, str]]) -> None:
    base, ids = served
    response = _wait_for(f"{base}/audio/{ids['mp3']}/waveform.json")
    data = response.json()
    assert set(data) == {"version", "channels", "sample_rate", "samples_per_pixel", "bits", "length", "data"}
    assert (data["version"], data["channels"], data["bits"]) == (2, 1, 8)
    assert data["length"] * 2 == len(data["data"]) and data["length"] > 100
    assert data["length"] * data["samples_per_pixel"] >= 4.0 * data["sample_rate"] * 0.98
    assert all(-128 <= v <= 127 for v in data["data"]) and max(data["data"]) > 0 > min(data["data"])
    assert response.headers["content-type"].startswith("application/json")
    etag = response.headers["etag"]
    assert "max-age" in response.headers["cache-control"]
    again = httpx.get(f"{base}/audio/{ids['mp3']}/waveform.json", headers={"If-None-Match": etag})
    assert again.status_code == 304


async def test_the_embed_player_draws_the_waveform_and_seeks_on_a_click(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, ids = served
    await asyncio.to_thread(_wait_for, f"{base}/audio/{ids['mp3']}/waveform.json")
    async with browser(tmp_path) as page:
        await page.goto(f"{base}/embed/{ids['mp3']}")
        await page.wait("document.getElementById('player').dataset.waveform === 'ready'", what="the waveform")
        await page.wait("document.getElementById('player').dataset.state === 'ready'", what="the audio metadata")
        lit = await page.eval(
            "(() => { const c = document.getElementById('wf'); const d = c.getContext('2d')"
            ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) "
            "if (d[i]) n++; return n })()"
        )
        assert lit > 0  # something was drawn
        box = await page.eval("(() => { const r = document.getElementById('wf').getBoundingClientRect(); "
                              "return [r.left, r.top, r.width, r.height] })()")
        x, y = box[0] + box[2] * 0.5, box[1] + box[3] / 2
        for kind in ("mousePressed", "mouseReleased"):
            await page.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        position = await page.wait("document.getElementById('audio').currentTime", what="a seek")
        assert position == pytest.approx(2.0, abs=0.25)  # half of 4 s


@pytest.mark.parametrize("fmt", ["aiff", "wma"])
async def test_aiff_and_wma_play_in_the_embed_page_from_their_rendition(
    served: tuple[str, dict[str, str]], tmp_path: Path, fmt: str
) -> None:
    base, ids = served
    await asyncio.to_thread(_wait_for_rendition, base, ids[fmt])
    async with browser(tmp_path) as page:
        # the control: Chromium cannot play the original as stored
        await page.goto(f"{base}/embed/{ids[fmt]}")
        original = await page.eval(
            f"new Promise(done => {{ const a = new Audio('{base}/audio/{ids[fmt]}/original'); "
            "a.onerror = () => done('error'); a.onloadedmetadata = () => done('loaded') })"
        )
        assert original == "error"
        og_type = await page.eval("document.querySelector('meta[property=\"og:audio:type\"]').content")
        assert og_type == "audio/mp4"
        await page.wait("document.getElementById('player').dataset.state === 'ready'", what=f"the {fmt} rendition to load")
        await page.eval("document.getElementById('audio').play()")
        await page.wait("document.getElementById('audio').currentTime > 0.3", what=f"the {fmt} track to play")
        duration = await page.eval("document.getElementById('audio').duration")
        assert duration == pytest.approx(4.0, abs=0.2)
