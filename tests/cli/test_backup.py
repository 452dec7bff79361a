"""``loist backup`` and ``loist restore`` from the command line (the logic: tests/library/test_backup.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import run
from tests.support.audio import AudioFactory


def test_backup_then_restore_into_a_new_data_folder(
    embedded: Path, tmp_path: Path, audio_factory: AudioFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run("ingest", str(audio_factory("flac", tags={"title": "Kept", "artist": "Anouk"})))
    assert code == 0, err
    code, out, err = run("backup", str(tmp_path / "bk"), "--json")
    assert code == 0, err
    made = json.loads(out)
    assert (made["tracks"], made["blobs_mode"], made["missing"]) == (1, "copy", [])
    assert "backed up 1 tracks" in run("backup", str(tmp_path / "bk2"))[1]

    monkeypatch.setenv("LOIST_DATA_DIR", str(tmp_path / "elsewhere"))
    code, out, err = run("restore", str(tmp_path / "bk"))
    assert code == 0, err
    assert "restored 1 tracks" in out and "checked playable" in out
    code, out, _ = run("search", "anouk", "--json")
    assert code == 0 and "Kept" in out
    code, _, err = run("restore", str(tmp_path / "bk"))  # not over tracks
    assert code == 2 and "already has 1 tracks" in err


def test_backup_refuses_an_unknown_blob_mode(tmp_path: Path) -> None:
    code, _, err = run("backup", str(tmp_path / "bk"), "--blobs", "zip")
    assert code == 2 and "--blobs must be copy or list" in err
