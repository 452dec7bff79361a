"""``loist ingest`` against a dead Cloud Storage: a line per file, at once, and the failure exit code.

The google client is pointed at a loopback listener that never answers (``STORAGE_EMULATOR_HOST``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loist.library.synthetic import wav_bytes
from tests.cli.conftest import json_lines, run
from tests.support.blackhole import Blackhole


def test_a_bulk_ingest_reports_every_file_after_the_breaker_opens(
    blackhole: Blackhole, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    for i in range(12):
        (folder / f"{i:02}.wav").write_bytes(wav_bytes(0.5, marker=str(i)))
    for name, value in {
        "STORAGE_EMULATOR_HOST": blackhole.url,
        "STORAGE_BACKEND": "gcs",
        "GCS_BUCKET_NAME": "dead-bucket",
        "GCS_TIMEOUT_S": "0.2",
        "GCS_READ_DEADLINE_S": "0",
        "GCS_BREAKER_FAILURES": "3",
        "GCS_BREAKER_COOLDOWN_S": "600",
    }.items():
        monkeypatch.setenv(name, value)
    code, out, _ = run("ingest", "--json", str(folder))
    rows = json_lines(out)
    assert code == 1  # some inputs failed
    assert len(rows) == 12 and {r["status"] for r in rows} == {"FAILED"}
    assert {r["error"]["code"] for r in rows} == {"STORAGE_FAILED"}
    assert blackhole.connections == 3  # the breaker's threshold; the other 9 never reached the network
    assert sum("unreachable" in r["error"]["message"] for r in rows) == 9
