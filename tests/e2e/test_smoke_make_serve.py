"""``loist smoke`` against a server configured as the README's ``make serve`` runs it (and as a bare
``loist serve`` does): no token, no EMBED_BASE_URL, the embedded SQLite library."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from loist.config import Settings
from loist.ops.smoke import Check, Report, run_smoke
from loist.web.app import create_app
from tests.support.liveserver import live_server

pytestmark = pytest.mark.e2e


def _settings(data_dir: Path, base_url: str, **values: object) -> Settings:
    port = urlsplit(base_url).port
    return Settings(_env_file=None, data_dir=data_dir, port=port, **values)  # type: ignore[call-arg,arg-type]


async def test_smoke_passes_against_make_serve_and_says_what_it_skipped(tmp_path: Path) -> None:
    # make serve: ALLOW_PRIVATE_URLS=true (the Makefile sets it), everything else the defaults.
    with live_server(lambda base: create_app(_settings(tmp_path, base, allow_private_urls=True))) as url:
        report = await run_smoke(url)
    checks = {c.name: c for c in report.checks}
    assert report.ok, report.lines()
    assert all(c.ok for name, c in checks.items() if name != "mcp_auth")
    auth = checks["mcp_auth"]
    assert (auth.ok, auth.skipped, auth.not_applicable) == (False, True, True)  # not counted as a pass
    assert "no token given" in auth.detail
    assert report.lines()[-1] == "PASS: 12/13 checks passed, 1 skipped (mcp_auth)"
    assert report.to_dict()["checks"][2]["skipped"] is True


async def test_smoke_against_a_server_that_refuses_loopback_says_how_to_allow_it(tmp_path: Path) -> None:
    with live_server(lambda base: create_app(_settings(tmp_path, base))) as url:  # a bare `loist serve`
        report = await run_smoke(url)
    ingest = next(c for c in report.checks if c.name == "ingest")
    assert report.ok is False and ingest.ok is False
    assert "ALLOW_PRIVATE_URLS=true" in ingest.detail and "--audio-url" in ingest.detail


def test_a_skipped_check_counts_as_a_pass_only_when_it_did_not_apply() -> None:
    not_applicable = Check("mcp_auth", skipped=True, not_applicable=True, detail="skipped: no token given")
    assert Report("http://x", [Check("live", ok=True), not_applicable]).ok is True
    blocked = Check("ready", skipped=True, detail="skipped: needs live")
    assert Report("http://x", [Check("live", ok=True), blocked]).ok is False
    assert Report("http://x", [not_applicable]).ok is False  # nothing passed is no pass
