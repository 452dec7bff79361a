"""Headless Chromium opens /embed/{id} on a real server and the player loads the audio.

Chromium runs with ``--dump-dom`` after a virtual-time budget; the page's own script records what
the media element reported (``data-state``, ``data-duration``) and writes the loaded duration into
the total-time element, so the dumped DOM shows whether the audio really loaded. It also proves the
page's CSP lets its nonce'd script run (otherwise the state would stay "loading").
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from loist.config import Settings
from loist.web.app import create_app
from tests.support.audio import AudioFactory
from tests.support.liveserver import live_server

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _settings(data_dir: Path, base_url: str = "http://127.0.0.1") -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, embed_base_url=base_url)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory, audio_factory: AudioFactory) -> tuple[Path, dict[str, str]]:
    """A data dir with an mp3 (3 s), an ogg (1 s) and a track whose audio blob has gone missing."""
    from loist.library.service import Library

    data_dir = tmp_path_factory.mktemp("browser")

    async def seed() -> dict[str, str]:
        lib = await Library.open(_settings(data_dir))
        try:
            mp3 = await lib.ingest_file(audio_factory("mp3", tags={"title": "Three"}, duration=3.0))
            ogg = await lib.ingest_file(audio_factory("ogg", tags={"title": "One"}, duration=1.0))
            gone = await lib.ingest_file(audio_factory("flac", tags={"title": "Gone"}, duration=1.0))
            assert gone.blob_key
            (lib.settings.blob_dir / gone.blob_key).unlink()
            return {"mp3": str(mp3.id), "ogg": str(ogg.id), "gone": str(gone.id)}
        finally:
            await lib.close()

    return data_dir, asyncio.run(seed())


@pytest.fixture(scope="module")
def server(tracks: tuple[Path, dict[str, str]]) -> Iterator[str]:
    data_dir, _ = tracks
    with live_server(lambda base: create_app(_settings(data_dir, base))) as url:
        yield url


def dump_dom(url: str, profile: Path) -> str:
    if not Path(CHROMIUM).exists():  # pragma: no cover - chromium is a stated requirement
        pytest.fail("chromium is required for the browser tests")
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
         f"--user-data-dir={profile}", "--window-size=300,160", "--virtual-time-budget=5000", "--dump-dom", url],
        capture_output=True, text=True, timeout=90, check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def player_state(dom: str) -> tuple[str, str, str]:
    main = re.search(r'<main[^>]*id="player"[^>]*>', dom)
    assert main, dom[:2000]
    state = re.search(r'data-state="([^"]*)"', main.group(0))
    duration = re.search(r'data-duration="([^"]*)"', main.group(0))
    total = re.search(r'id="dur">([^<]*)<', dom)
    assert state and duration and total
    return state.group(1), duration.group(1), total.group(1)


@pytest.mark.parametrize(("kind", "seconds", "label"), [("mp3", 3.0, "0:03"), ("ogg", 1.0, "0:01")])
def test_player_loads_audio_and_shows_duration(
    server: str, tracks: tuple[Path, dict[str, str]], tmp_path: Path, kind: str, seconds: float, label: str
) -> None:
    _, ids = tracks
    state, duration, total = player_state(dump_dom(f"{server}/embed/{ids[kind]}", tmp_path))
    assert state == "ready"  # loadedmetadata fired: the browser fetched and decoded the stream
    assert float(duration) == pytest.approx(seconds, abs=0.15)
    assert total == label


def test_player_reports_unplayable_audio(server: str, tracks: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    _, ids = tracks
    dom = dump_dom(f"{server}/embed/{ids['gone']}", tmp_path)
    state, duration, _ = player_state(dom)
    assert state == "error" and duration == ""
    assert re.search(r'class="err"[^>]*role="alert"', dom)  # the message is shown (not hidden)
