"""``scripts/loadtest``: locust's mixed profile, headless and short, against a real local server;
the report it writes; the thresholds it judges by (a planted impossible one must fail the run).

Bounded: 4 users with short think times for 5 seconds, loopback only.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from loadtest.run import find_tracks

from loist.config import Settings
from loist.web.app import create_app
from tests.support.audio import AudioFactory
from tests.support.liveserver import live_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "loadtest"
TOKEN = "loadtest-bearer-token-0123456789abcdef0123"


def _settings(data_dir: Path, base_url: str) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None, data_dir=data_dir, embed_base_url=base_url, auth_enabled=True, bearer_token=TOKEN,
        allow_private_urls=True,  # the assistant ingests from the loopback fixture server
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, audio_factory: AudioFactory) -> Iterator[str]:
    from loist.library.service import Library

    data_dir = tmp_path_factory.mktemp("loadtest")

    async def seed() -> None:
        lib = await Library.open(_settings(data_dir, "http://127.0.0.1"))
        try:
            await lib.ingest_file(audio_factory("mp3", tags={"title": "Load", "artist": "Test"}, artwork=True))
            await lib.seed_synthetic(30)
        finally:
            await lib.close()

    asyncio.run(seed())
    with live_server(lambda base: create_app(_settings(data_dir, base))) as url:
        # First calls import and warm what the run then measures (search, templates, the stream path).
        tracks = find_tracks(url, TOKEN)
        assert any(track["artwork"] for track in tracks)
        with httpx.Client(base_url=url) as client:
            assert client.get(f"/embed/{tracks[0]['id']}").status_code == 200
        yield url


def loadtest(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOADTEST_BEARER_TOKEN": TOKEN}
    env.pop("LOADTEST_AUDIO_URL", None)
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def report(server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    directory = tmp_path_factory.mktemp("loadtest-report")
    done = loadtest("--host", server, "--users", "4", "--spawn-rate", "4", "--duration", "5s",
                    "--think-time", "0.05,0.2", "--profile", "mixed", "--report", str(directory))
    return directory, done


def test_the_mixed_profile_passes_its_thresholds_and_writes_a_report(report: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    directory, done = report
    assert done.returncode == 0, done.stderr
    assert (directory / "report.html").stat().st_size > 0
    with (directory / "locust_stats.csv").open(newline="") as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    made = {name for name, row in rows.items() if int(row["Request Count"]) > 0}
    assert "MCP initialize" in made and "Aggregated" in made
    assert any(name.startswith("MCP ") and name != "MCP initialize" for name in made), made
    assert any(name.startswith("GET /") for name in made), made
    assert int(rows["Aggregated"]["Failure Count"]) == 0, (directory / "locust_failures.csv").read_text()
    assert json.loads((directory / "verdict.json").read_text())["passed"] is True


def test_a_broken_threshold_fails_the_run(report: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    directory, _ = report
    planted = tmp_path / "impossible.toml"
    planted.write_text('[mixed]\nmax_error_ratio = 0.01\n[mixed.p95_ms]\n"MCP initialize" = 0.001\n')
    done = loadtest("--evaluate", str(directory), "--profile", "mixed", "--thresholds", str(planted))
    assert done.returncode == 1, done.stderr
    assert "MCP initialize: p95" in done.stderr
    verdict = json.loads((directory / "verdict.json").read_text())
    assert verdict["passed"] is False and verdict["broken"]


def test_an_endpoint_named_but_never_called_breaks_a_strict_profile(report: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    directory, _ = report
    planted = tmp_path / "strict.toml"
    planted.write_text('[mixed]\nmax_error_ratio = 0.5\nrequire_all = true\n[mixed.p95_ms]\n"GET /nowhere" = 100000\n')
    done = loadtest("--evaluate", str(directory), "--thresholds", str(planted))
    assert done.returncode == 1
    assert "GET /nowhere: no requests" in done.stderr


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert loadtest().returncode == 2  # no --host
    done = loadtest("--evaluate", str(tmp_path), "--thresholds", str(tmp_path / "missing.toml"))
    assert done.returncode == 2 and "cannot read thresholds" in done.stderr
