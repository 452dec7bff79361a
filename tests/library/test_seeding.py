"""``loist seed --audio``: real ffmpeg-made audio in several formats, ingested through the library."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loist.config import Settings
from loist.errors import InvalidArgument
from loist.library.seeding import SEED_FORMATS, plan, seed_audio
from loist.library.service import Library


@pytest.fixture
async def library(tmp_path: Path) -> AsyncIterator[Library]:
    lib = await Library.open(Settings(data_dir=tmp_path / "data", _env_file=None))
    try:
        yield lib
    finally:
        await lib.close()


def test_plan_is_deterministic_and_cycles_formats() -> None:
    assert plan(8, seed=1) == plan(8, seed=1)
    assert plan(8, seed=1) != plan(8, seed=2)
    formats = [t.fmt for t in plan(len(SEED_FORMATS), seed=0)]
    assert formats == list(SEED_FORMATS) and len(set(formats)) >= 5
    with pytest.raises(InvalidArgument):
        plan(-1)
    with pytest.raises(InvalidArgument):
        plan(10_000)


async def test_seed_audio_ingests_tagged_formats_with_artwork_idempotently(library: Library) -> None:
    n = len(SEED_FORMATS)
    report = await seed_audio(library, n, seed=5)
    assert (report.created, report.existing, report.failed) == (n, 0, [])
    assert report.formats == {fmt: 1 for fmt in SEED_FORMATS}
    expected = {t.tags["title"]: t for t in plan(n, seed=5)}
    for track_id in report.track_ids:
        track = await library.get(track_id)
        wanted = expected[track.tags.title]
        assert track.audio.format == wanted.fmt
        assert track.tags.artist == wanted.tags["artist"] and track.tags.album == wanted.tags["album"]
        assert track.tags.genres == [wanted.tags["genre"]] and track.tags.year == int(wanted.tags["date"])
        assert track.audio.duration_s == pytest.approx(wanted.seconds, abs=0.1)
        if wanted.fmt != "wav":
            assert track.artwork.present and track.thumbnail_key and library.store.exists(track.thumbnail_key)
    again = await seed_audio(library, n, seed=5)
    assert (again.created, again.existing) == (0, n), "the same seed must make the same bytes"
    assert await library.catalog.count() == n


def test_cli_seed_needs_something_to_do(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "loist", "seed", "--json"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "LOIST_DATA_DIR": str(tmp_path / "d")})
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"]["code"] == "INVALID_ARGUMENT"


def test_cli_seed_audio_and_wipe(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LOIST_DATA_DIR": str(tmp_path / "d")}

    def seed(*args: str) -> dict:
        done = subprocess.run([sys.executable, "-m", "loist", "seed", *args, "--json"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = seed("--audio", "2")
    assert first["audio"]["created"] == 2
    second = seed("--wipe", "--audio", "2")
    assert second["wiped"] == 2 and second["audio"]["created"] == 2
