"""``loist smoke``, the deployment check, against the real local stack (as CI runs it).

Each run ingests a freshly generated WAV (or a given audio URL), walks every check and deletes
what it created, so the runs share the session's stack without seeing each other's tracks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loist.ops.smoke import REQUIRED_TOOLS, Check, Report, is_loopback_url, meta_tags, smoke_wav
from tests.support.audio import AudioFactory
from tests.support.httpserver import LoopbackServer
from tests.support.localstack import RunningStack

# One worker runs every test on the session's stack (pytest -n 2 --dist loadgroup): one stack, not two.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local_stack")]

CHECKS = ["live", "ready", "mcp_auth", "tools_list", "ingest", "update", "metadata", "search", "embed",
          "oembed", "stream_range", "delete", "gone"]


def smoke(stack: RunningStack, *args: str, token: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in stack.command_env().items() if k not in ("SMOKE_BEARER_TOKEN", "SMOKE_AUDIO_URL")}
    if token is not None:
        env["SMOKE_BEARER_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "loist", "smoke", "--base-url", stack.base_url, *args],
        env=env, capture_output=True, text=True, timeout=300, cwd=cwd,
    )


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def test_smoke_passes_against_the_local_stack(local_stack: RunningStack, tmp_path: Path) -> None:
    done = smoke(local_stack, "--json", token=local_stack.token, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == CHECKS
    checks = by_name(report)
    assert all(c["ok"] for c in checks.values()), checks
    assert "401" in checks["mcp_auth"]["detail"]
    assert checks["stream_range"]["detail"].startswith("206 bytes 0-99/")
    assert "NOT_FOUND" in checks["gone"]["detail"]
    assert local_stack.token not in done.stdout + done.stderr


def test_smoke_text_report_marks_each_check(local_stack: RunningStack, tmp_path: Path) -> None:
    done = smoke(local_stack, "--token", local_stack.token, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"deployment check of {local_stack.base_url}"
    for name in CHECKS:
        assert any(line.strip().startswith(f"✓ {name} ") for line in lines), (name, done.stdout)
    assert lines[-1] == f"PASS: {len(CHECKS)}/{len(CHECKS)} checks passed"
    assert local_stack.token not in done.stdout + done.stderr, "the token was printed"


def test_smoke_with_a_given_audio_url(local_stack: RunningStack, audio_factory: AudioFactory,
                                      http_server: LoopbackServer, tmp_path: Path) -> None:
    # unique bytes (a fresh tone length) so the track is new to the shared stack
    song = audio_factory("mp3", tags={"title": f"given url {tmp_path.name}"}, duration=1.3)
    url = http_server.file("/given.mp3", song.read_bytes(), content_type="audio/mpeg")
    done = smoke(local_stack, "--json", "--audio-url", url, token=local_stack.token, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = by_name(json.loads(done.stdout))
    assert "(mp3," in checks["ingest"]["detail"]
    assert http_server.requests_to("/given.mp3"), "the deployment did not fetch the given URL"


def test_smoke_fails_with_a_wrong_token_and_never_prints_it(local_stack: RunningStack, tmp_path: Path) -> None:
    wrong = "wrong-token-" + "z" * 30
    done = smoke(local_stack, "--json", token=wrong, cwd=tmp_path)
    assert done.returncode == 1
    checks = by_name(json.loads(done.stdout))
    assert checks["live"]["ok"] and checks["ready"]["ok"]
    assert not checks["tools_list"]["ok"]
    assert "HTTP 401" in checks["tools_list"]["detail"]
    assert all(checks[name]["skipped"] for name in CHECKS[4:])
    assert wrong not in done.stdout + done.stderr


def test_smoke_without_a_token_fails_against_an_authenticated_server(local_stack: RunningStack, tmp_path: Path) -> None:
    done = smoke(local_stack, "--json", cwd=tmp_path)
    assert done.returncode == 1
    checks = by_name(json.loads(done.stdout))
    assert "no token given" in checks["mcp_auth"]["detail"]
    assert not checks["tools_list"]["ok"] and "401" in checks["tools_list"]["detail"]


def test_smoke_reports_an_unreachable_deployment(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = subprocess.run(
        [sys.executable, "-m", "loist", "smoke", "--base-url", f"http://127.0.0.1:{port}", "--json", "--timeout", "5"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 1
    checks = by_name(json.loads(done.stdout))
    assert not checks["live"]["ok"] and "Connect" in checks["live"]["detail"]
    assert not checks["ready"]["ok"]


def test_smoke_needs_an_audio_url_for_a_remote_deployment(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loist", "smoke", "--base-url", "https://loist.example.test", "--json"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["code"] == "INVALID_ARGUMENT" and "--audio-url" in error["message"]


# --- pieces of the check, without a server ----------------------------------------------------


def test_generated_wav_is_new_every_time() -> None:
    first, second = smoke_wav(), smoke_wav()
    assert first[:4] == b"RIFF" and first[8:12] == b"WAVE"
    assert first != second  # a new sha256 per run: the check deletes only what it created


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://127.0.0.1:8080", True), ("http://localhost:1", True), ("http://[::1]:9/", True),
    ("https://loist.example.com", False), ("http://10.0.0.1", False),
])
def test_loopback_detection(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_meta_tags_reads_property_and_name() -> None:
    html = '<meta property="og:title" content="A"><meta name="twitter:card" content="player"><meta charset="utf-8">'
    assert meta_tags(html) == {"og:title": "A", "twitter:card": "player"}


def test_report_is_ok_only_when_every_check_passed() -> None:
    report = Report("http://x", [Check("live", ok=True), Check("ready", skipped=True, detail="skipped: needs live")])
    assert report.ok is False
    assert report.lines()[-1] == "FAIL: 1/2 checks passed, 1 skipped (ready)"
    assert Report("http://x").ok is False  # no checks is not a pass
    assert set(REQUIRED_TOOLS) >= {"process_audio_complete", "delete_audio", "search_library"}
