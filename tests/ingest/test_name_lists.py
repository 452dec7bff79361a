"""Multi-valued name tags (artists, album artists, composers) read from every tag family that lists them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mutagen.flac import FLAC
from mutagen.id3 import ID3, TCOM, TIT2, TPE1, TPE2, TXXX
from mutagen.mp4 import MP4, MP4FreeForm

from loist.ingest.analyze import analyze
from loist.ingest.tags import split_names
from tests.support.audio import AudioFactory


def _copy(audio_factory: AudioFactory, fmt: str, tmp_path: Path) -> Path:
    target = tmp_path / f"multi.{fmt}"
    shutil.copy(audio_factory(fmt), target)
    return target


def test_id3v24_lists_keep_every_name(audio_factory: AudioFactory, tmp_path: Path) -> None:
    path = _copy(audio_factory, "mp3", tmp_path)
    id3 = ID3()
    id3.add(TIT2(encoding=3, text=["Duet"]))
    id3.add(TPE1(encoding=3, text=["Anna", "Björn"]))
    id3.add(TPE2(encoding=3, text=["Anna", "Björn", "Cleo"]))
    id3.add(TCOM(encoding=3, text=["Dora", "Emil"]))
    id3.save(path, v2_version=4)
    tags = analyze(path).tags
    assert tags.artists == ["Anna", "Björn"]
    assert tags.artist == "Anna & Björn"  # the display form
    assert tags.album_artists == ["Anna", "Björn", "Cleo"]
    assert tags.album_artist == "Anna & Björn & Cleo"
    assert (tags.composers, tags.composer) == (["Dora", "Emil"], "Dora & Emil")


def test_id3_artists_frame_wins_over_the_display_string(audio_factory: AudioFactory, tmp_path: Path) -> None:
    """Picard writes TPE1 "A feat. B" for display and TXXX:ARTISTS with the names."""
    path = _copy(audio_factory, "mp3", tmp_path)
    id3 = ID3()
    id3.add(TPE1(encoding=3, text=["Anna feat. Björn"]))
    id3.add(TXXX(encoding=3, desc="ARTISTS", text=["Anna", "Björn"]))
    id3.save(path, v2_version=4)
    assert analyze(path).tags.artists == ["Anna", "Björn"]


def test_repeated_vorbis_fields_keep_every_name(audio_factory: AudioFactory, tmp_path: Path) -> None:
    path = _copy(audio_factory, "flac", tmp_path)
    flac = FLAC(path)
    flac["ARTIST"] = ["Anna", "Björn"]
    flac["ALBUMARTIST"] = ["Cleo", "Dora"]
    flac["COMPOSER"] = ["Emil", "emil"]  # the same name twice is one name
    flac.save()
    tags = analyze(path).tags
    assert (tags.artists, tags.album_artists, tags.composers) == (["Anna", "Björn"], ["Cleo", "Dora"], ["Emil"])


def test_mp4_lists_keep_every_name(audio_factory: AudioFactory, tmp_path: Path) -> None:
    path = _copy(audio_factory, "m4a", tmp_path)
    mp4 = MP4(path)
    mp4["\xa9ART"] = ["Anna", "Björn"]
    mp4["aART"] = ["Cleo"]
    mp4["\xa9wrt"] = ["Dora", "Emil"]
    mp4.save()
    tags = analyze(path).tags
    assert (tags.artists, tags.album_artists, tags.composers) == (["Anna", "Björn"], ["Cleo"], ["Dora", "Emil"])
    mp4["----:com.apple.iTunes:ARTISTS"] = [MP4FreeForm(b"Fay"), MP4FreeForm(b"Gus")]
    mp4.save()
    assert analyze(path).tags.artists == ["Fay", "Gus"]


@pytest.mark.parametrize(
    ("values", "names"),
    [
        (["Simon & Garfunkel"], ["Simon & Garfunkel"]),  # never split on "&" ...
        (["AC/DC"], ["AC/DC"]),  # ... nor on "/"
        (["A\x00B", " B ", ""], ["A", "B"]),  # NUL-separated (ID3v2.4 text), cleaned, de-duplicated
    ],
)
def test_split_names(values: list[str], names: list[str]) -> None:
    assert split_names(values) == names
