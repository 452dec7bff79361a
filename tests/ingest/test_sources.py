"""Inputs: classifying URLs/files/folders, walking folders, and skipping what is not audio."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from loist.errors import InvalidArgument, NotFound
from loist.ingest.sources import classify, looks_like_audio, walk_folder
from tests.support.audio import AudioFactory, png_bytes


def test_classify(tmp_path: Path) -> None:
    song = tmp_path / "a.mp3"
    song.write_bytes(b"x")
    assert classify("https://example.com/a.mp3") == "url"
    assert classify("HTTP://example.com/a.mp3") == "url"
    assert classify(str(song)) == "file"
    assert classify(str(tmp_path)) == "folder"
    assert classify(f"  {tmp_path}  ") == "folder"


@pytest.mark.parametrize("value", ["", "   ", "ftp://example.com/a.mp3", "s3://bucket/key"])
def test_classify_refuses_what_it_cannot_ingest(value: str) -> None:
    with pytest.raises(InvalidArgument):
        classify(value)


def test_a_missing_path_is_not_found_like_over_mcp() -> None:
    with pytest.raises(NotFound, match="no such file or folder"):
        classify("/no/such/path.mp3")


def test_walk_is_recursive_sorted_and_skips_hidden(tmp_path: Path) -> None:
    for rel in ["b.mp3", "a.flac", "sub/z.ogg", "sub/deeper/c.wav", ".hidden.mp3", ".git/objects/x", "sub/.cache/y"]:
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    found = [p.relative_to(tmp_path).as_posix() for p in walk_folder(tmp_path)]
    assert found == ["a.flac", "b.mp3", "sub/deeper/c.wav", "sub/z.ogg"]


def test_walk_survives_symlink_loops(tmp_path: Path) -> None:
    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "a.mp3").write_bytes(b"x")
    os.symlink(tmp_path, tmp_path / "music" / "loop")  # points back up: a cycle
    os.symlink(tmp_path / "missing", tmp_path / "music" / "broken")
    found = [p.relative_to(tmp_path).as_posix() for p in walk_folder(tmp_path)]
    assert found == ["music/a.mp3"]


def test_walk_of_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(InvalidArgument):
        list(walk_folder(tmp_path / "f"))


def test_looks_like_audio(audio_factory: AudioFactory, tmp_path: Path) -> None:
    for fmt in ("mp3", "flac", "ogg", "opus", "m4a", "wav", "aiff"):
        assert looks_like_audio(audio_factory(fmt)), fmt
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(png_bytes((10, 10)))
    notes = tmp_path / "notes.txt"
    notes.write_text("tracklist\n")
    disguised = tmp_path / "cover.mp3"
    disguised.write_bytes(png_bytes((10, 10)))
    for path in (cover, notes, disguised, audio_factory.bad("empty"), audio_factory.bad("random")):
        assert not looks_like_audio(path), path.name
    assert not looks_like_audio(tmp_path / "missing.mp3")
    # broken audio is still audio: a folder ingest reports it as failed, not as skipped
    assert looks_like_audio(audio_factory.bad("truncated"))


def test_walk_then_filter_a_realistic_album(audio_factory: AudioFactory, tmp_path: Path) -> None:
    album = tmp_path / "Album"
    album.mkdir()
    shutil.copyfile(audio_factory("mp3"), album / "01.mp3")
    shutil.copyfile(audio_factory("flac"), album / "02.flac")
    (album / "cover.jpg").write_bytes(png_bytes((10, 10)))
    (album / "info.txt").write_text("x")
    audio = [p.name for p in walk_folder(album) if looks_like_audio(p)]
    assert audio == ["01.mp3", "02.flac"]
