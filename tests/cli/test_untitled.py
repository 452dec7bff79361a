"""An untagged file is listed by its file name and found by the file name's words."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.cli.conftest import json_lines, run
from tests.support.audio import AudioFactory


def test_search_finds_an_untagged_file_by_its_name(tmp_path: Path, audio_factory: AudioFactory) -> None:
    path = tmp_path / "spoken_intro.wav"
    shutil.copy(audio_factory("wav"), path)  # no tags at all
    assert run("ingest", str(path))[0] == 0
    code, out, _ = run("list")
    assert code == 0 and "spoken_intro.wav" in out
    code, out, _ = run("search", "spoken", "--json")
    assert code == 0
    [result] = json_lines(out)
    assert [hit["track"]["source"]["original_filename"] for hit in result["items"]] == ["spoken_intro.wav"]
    assert result["items"][0]["track"]["tags"]["title"] is None
