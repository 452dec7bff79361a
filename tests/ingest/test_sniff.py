"""Format recognition from bytes: every supported format, ID3 prefixes, and what is not audio."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from mutagen.aiff import AIFF
from mutagen.asf import ASF
from mutagen.flac import FLAC
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE
from mutagen.wavpack import WavPack

from loist.errors import ErrorCode, InvalidFormat
from loist.ingest.sniff import Sniffed, mpeg_frame_length, sniff_file
from tests.support.audio import AudioFactory


def sniff_path(path: Path) -> Sniffed:
    with path.open("rb") as handle:
        return sniff_file(handle)


def sniff_data(data: bytes) -> Sniffed:
    return sniff_file(io.BytesIO(data))


def id3_tag(title: str = "x", padding: int = 0) -> bytes:
    """A minimal ID3v2.3 tag (one TIT2 frame) with optional zero padding."""
    body = b"\x00" + title.encode("latin-1")
    frame = b"TIT2" + len(body).to_bytes(4, "big") + b"\x00\x00" + body
    size = len(frame) + padding
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + frame + b"\x00" * padding


def strip_id3(data: bytes) -> bytes:
    assert data.startswith(b"ID3")
    size = (data[6] << 21) | (data[7] << 14) | (data[8] << 7) | data[9]
    return data[10 + size :]


@pytest.mark.parametrize(
    ("fmt", "expected", "mime", "cls"),
    [
        ("mp3", "mp3", "audio/mpeg", MP3),
        ("flac", "flac", "audio/flac", FLAC),
        ("ogg", "ogg", "audio/ogg", OggVorbis),
        ("opus", "opus", "audio/ogg", OggOpus),
        ("m4a", "m4a", "audio/mp4", MP4),
        ("alac", "m4a", "audio/mp4", MP4),
        ("wav", "wav", "audio/wav", WAVE),
        ("aiff", "aiff", "audio/aiff", AIFF),
        ("wv", "wv", "audio/x-wavpack", WavPack),
        ("wma", "wma", "audio/x-ms-wma", ASF),
        ("spx", "spx", "audio/ogg", OggSpeex),
    ],
)
def test_each_format_is_recognised_from_its_bytes(
    audio_factory: AudioFactory, fmt: str, expected: str, mime: str, cls: type
) -> None:
    found = sniff_path(audio_factory(fmt))
    assert (found.format, found.mime_type, found.mutagen_class) == (expected, mime, cls)


def test_the_file_name_is_ignored(audio_factory: AudioFactory, tmp_path: Path) -> None:
    disguised = audio_factory.copy("flac", tmp_path / "song.mp3")
    assert sniff_path(disguised).format == "flac"


def test_mp3_without_id3_is_recognised_by_frame_sync(audio_factory: AudioFactory) -> None:
    bare = strip_id3(audio_factory("mp3").read_bytes())
    assert bare[0] == 0xFF
    assert sniff_data(bare).format == "mp3"


def test_mp3_after_padded_id3_is_recognised(audio_factory: AudioFactory) -> None:
    bare = strip_id3(audio_factory("mp3").read_bytes())
    assert sniff_data(id3_tag(padding=2048) + bare).format == "mp3"


def test_mp3_after_a_large_id3_tag_is_recognised(audio_factory: AudioFactory) -> None:
    bare = strip_id3(audio_factory("mp3").read_bytes())
    data = id3_tag(padding=200_000) + bare  # the audio starts beyond the first bytes read
    assert sniff_data(data).format == "mp3"


def test_flac_after_id3_is_flac(audio_factory: AudioFactory) -> None:
    data = id3_tag("flac with id3") + audio_factory("flac").read_bytes()
    found = sniff_data(data)
    assert found.format == "flac"
    assert found.mutagen_class is FLAC


def test_mpeg_frame_length_of_a_known_header() -> None:
    # MPEG-1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417 bytes
    assert mpeg_frame_length(b"\xff\xfb\x90\x00") == 417
    assert mpeg_frame_length(b"\xff\xfb\x92\x00") == 418  # with padding
    assert mpeg_frame_length(b"\xff\xfb\xf0\x00") is None  # bitrate index 15 is invalid
    assert mpeg_frame_length(b"\xff\xfb\x9c\x00") is None  # sample-rate index 3 is reserved
    assert mpeg_frame_length(b"\xff\xe9\x90\x00") is None  # layer 0 is reserved


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("empty", "empty"),
        ("png_as_mp3", "PNG"),
        ("random", "not a recognised audio format"),
        ("text", "text"),
        ("truncated", "truncated"),
    ],
)
def test_bad_files_are_invalid_format(audio_factory: AudioFactory, kind: str, message: str) -> None:
    with pytest.raises(InvalidFormat, match=message) as info:
        sniff_path(audio_factory.bad(kind))
    assert info.value.code is ErrorCode.INVALID_FORMAT


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "JPEG"),
        (b"%PDF-1.7\n" + b"x" * 100, "PDF"),
        (b"<!DOCTYPE html><html></html>", "HTML"),
        (b"PK\x03\x04" + b"\x00" * 100, "ZIP"),
        (b"ID3\x03\x00\x00\x00\x00\x00\x10" + b"\x00" * 16, "only an ID3 tag"),
        (b"RIFF\x00\x00\x00\x00AVI LIST", "AVI"),
        (b"fLaC\x00\x00\x00\x22", "FLAC"),
        (b"OggS\x00", "truncated"),
        (b"\xff\xfb\x90\x00" + b"\x00" * 50, "truncated"),
    ],
)
def test_not_audio_or_cut_short(data: bytes, message: str) -> None:
    with pytest.raises(InvalidFormat, match=message):
        sniff_data(data)


def test_ogg_theora_is_video_not_audio() -> None:
    page = b"OggS\x00\x02" + b"\x00" * 20 + b"\x01" + b"\x2a" + b"\x80theora" + b"\x00" * 40
    with pytest.raises(InvalidFormat, match="video"):
        sniff_data(page)


def test_rf64_is_recognised_but_refused(tmp_path: Path) -> None:
    dest = tmp_path / "a.wav"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i",
         "sine=duration=0.2", "-rf64", "always", str(dest)],
        check=True,
    )
    with pytest.raises(InvalidFormat, match="RF64") as info:
        sniff_path(dest)
    assert info.value.details["format"] == "wav"


def test_sniff_by_path(audio_factory: AudioFactory) -> None:
    from loist.ingest.sniff import sniff

    found = sniff(audio_factory("opus"))
    assert (found.format, found.codec, found.mutagen_class) == ("opus", "opus", OggOpus)


def test_random_bytes_are_never_taken_for_audio() -> None:
    import random

    for seed in range(300):
        data = random.Random(seed).randbytes(16 * 1024)
        with pytest.raises(InvalidFormat):
            sniff_data(data)
