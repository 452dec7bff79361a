"""``loist seed``, ``db``, ``config`` and ``fsck`` (``loist.cli.admin``)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from loist.errors import EXIT_CODE, ErrorCode
from tests.cli.conftest import run
from tests.support.audio import AudioFactory


def test_seed_synthetic_is_counted() -> None:
    code, out, _ = run("seed", "--synthetic", "120", "--json")
    assert code == 0
    assert json.loads(out)["added"] == 120
    code, out, _ = run("list", "--json", "--limit", "1000")
    assert len(json.loads(out)["items"]) == 120


def test_db_commands(embedded: Path) -> None:
    code, out, _ = run("db", "upgrade", "--json")
    assert code == 0
    head = json.loads(out)["current"]
    code, out, _ = run("db", "current", "--json")
    assert json.loads(out) == {"current": head, "head": head, "up_to_date": True}
    code, out, _ = run("db", "downgrade", "base", "--json")
    assert code == 0 and json.loads(out)["current"] is None
    code, out, _ = run("db", "current", "--json")
    assert json.loads(out)["up_to_date"] is False


def test_config_check_ok_and_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run("config", "check", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["problems"] == []
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("BEARER_TOKEN", "super-secret-token-value")
    code, out, _ = run("config", "check", "--json")
    report = json.loads(out)
    assert code == EXIT_CODE[ErrorCode.CONFIG_INVALID]
    assert report["ok"] is False and any("AUTH_ENABLED" in p for p in report["problems"])
    assert "super-secret-token-value" not in out
    code, _, err = run("config", "check")
    assert code == 4 and "problem" in err


def test_config_check_reports_a_refused_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "not-a-port")
    code, out, _ = run("config", "check", "--json")
    assert code == EXIT_CODE[ErrorCode.CONFIG_INVALID]
    error = json.loads(out)["error"]
    assert error["code"] == "CONFIG_INVALID" and "port" in error["message"]


def test_import_refuses_an_unknown_blob_mode(embedded: Path, tmp_path: Path) -> None:
    code, out, _ = run("import", str(tmp_path / "missing.jsonl"), "--blobs", "steal", "--json")
    assert code == EXIT_CODE[ErrorCode.INVALID_ARGUMENT]
    assert json.loads(out)["error"]["message"] == "--blobs must be copy or silence, got 'steal'"
    assert not embedded.exists()  # refused before anything was opened


def test_fsck_reports_then_repairs_with_its_exit_codes(
    embedded: Path, audio_factory: AudioFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # fsck looks at this machine's temp folder
    code, out, _ = run("ingest", "--json", str(audio_factory("mp3", tags={"title": "Gone"})))
    track = json.loads(out.splitlines()[0])["track"]
    code, out, _ = run("fsck", "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    blobs = embedded / "blobs"
    blobs.joinpath(*track["blob_key"].split("/")).unlink()  # the audio is gone (its content-type sidecar is not)
    orphan = blobs / "audio" / "ff" / ("ff" * 32 + ".mp3")  # a blob no row references
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"orphan")

    code, out, _ = run("fsck", "--json", "--grace", "0")
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert (report["missing_blobs"], report["orphan_blobs"], report["orphan_sidecars"]) == (1, 1, 1)
    assert report["remaining"] == 3
    assert {item["kind"] for item in report["items"]} == {"missing_blob", "orphan_blob", "orphan_sidecar"}
    code, out, _ = run("fsck", "--grace", "0")  # the text form names them and says what to do
    assert code == 1 and track["blob_key"] in out and orphan.name in out

    code, out, _ = run("fsck", "--repair", "--grace", "0", "--json")
    report = json.loads(out)
    assert code == 0 and report["repaired"] == 3 and report["remaining"] == 0
    assert not orphan.exists()
    code, out, _ = run("show", track["id"], "--json")
    assert json.loads(out)["status"] == "FAILED" and json.loads(out)["error_code"] == "STORAGE_FAILED"
    code, out, _ = run("fsck", "--json")
    assert code == 0 and json.loads(out)["ok"] is True
