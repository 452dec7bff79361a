"""analyze(): hashes, technical properties, tags per tag family, artwork and thumbnails."""

from __future__ import annotations

import base64
import hashlib
import io
import pickle
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from mutagen.flac import Picture
from mutagen.id3 import APIC, COMM, ID3, TCON, TIT2, TPE1, TRCK, TYER
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4, MP4FreeForm
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE
from PIL import Image

from loist.errors import InvalidArgument, InvalidFormat, NotFound
from loist.ingest.analyze import Analysis, analyze, make_thumbnail
from loist.ingest.tags import clean_text, parse_number, parse_year, split_genres
from tests.support.audio import AudioFactory, png_bytes

FULL_TAGS = {
    "title": "Sóng Title",
    "artist": "The Artist",
    "album": "The Album",
    "album_artist": "Various",
    "genre": "Rock;Jazz",
    "date": "2019-05-01",
    "track": "3/12",
    "disc": "1/2",
    "composer": "Comp Oser",
    "publisher": "Label Co",
    "comment": "Recorded live",
    "ISRC": "USRC17607839",
}
EXPECTED = {
    "title": "Sóng Title",
    "artist": "The Artist",
    "album": "The Album",
    "artists": ["The Artist"],
    "album_artist": "Various",
    "album_artists": ["Various"],
    "genres": ["Rock", "Jazz"],
    "year": 2019,
    "track_number": 3,
    "disc_number": 1,
    "composer": "Comp Oser",
    "composers": ["Comp Oser"],
    "label": "Label Co",
    "isrc": "USRC17607839",
    "comment": "Recorded live",
}
# What each container can carry when written by ffmpeg (the rest it drops, so we expect None).
NOT_WRITTEN = {
    "m4a": {"label", "isrc"},
    "alac": {"label", "isrc"},
    "wav": {"album_artist", "disc_number", "composer", "label", "isrc"},
}
TECH = {
    # fmt: (extension, codec, mime, bit_depth)
    "mp3": ("mp3", "mp3", "audio/mpeg", None),
    "flac": ("flac", "flac", "audio/flac", 16),
    "ogg": ("ogg", "vorbis", "audio/ogg", None),
    "opus": ("opus", "opus", "audio/ogg", None),
    "m4a": ("m4a", "aac", "audio/mp4", None),
    "alac": ("m4a", "alac", "audio/mp4", 16),
    "wav": ("wav", "pcm_s16le", "audio/wav", 16),
    "aiff": ("aiff", "pcm_s16be", "audio/aiff", 16),
    "wv": ("wv", "wavpack", "audio/x-wavpack", 16),
    "wma": ("wma", "wma", "audio/x-ms-wma", None),
}


@pytest.mark.parametrize("fmt", sorted(TECH))
def test_technical_properties(audio_factory: AudioFactory, fmt: str) -> None:
    path = audio_factory(fmt)
    result = analyze(path)
    extension, codec, mime, bits = TECH[fmt]
    data = path.read_bytes()
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert result.size_bytes == len(data)
    assert result.extension == extension
    audio = result.audio
    assert (audio.format, audio.codec, audio.mime_type, audio.bit_depth) == (extension, codec, mime, bits)
    assert audio.duration_s == pytest.approx(1.0, abs=0.1)
    assert audio.channels == 2
    assert audio.sample_rate_hz == (48000 if fmt == "opus" else 44100)
    assert audio.bitrate_bps and audio.bitrate_bps > 8000
    assert result.artwork.present is False
    assert result.thumbnail is None


def test_mono_and_other_sample_rates(audio_factory: AudioFactory) -> None:
    result = analyze(audio_factory("flac", channels=1, sample_rate=22050, duration=0.5))
    assert (result.audio.channels, result.audio.sample_rate_hz) == (1, 22050)
    assert result.audio.duration_s == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("fmt", ["mp3", "flac", "ogg", "opus", "m4a", "alac", "wav", "aiff", "wv", "wma", "spx"])
def test_tags_are_read(audio_factory: AudioFactory, fmt: str) -> None:
    tags = analyze(audio_factory(fmt, tags=FULL_TAGS)).tags.model_dump()
    missing = NOT_WRITTEN.get(fmt, set())
    missing |= {f"{name}s" for name in missing if f"{name}s" in EXPECTED}  # a name list goes with its string
    expected = {k: (([] if isinstance(v, list) else None) if k in missing else v) for k, v in EXPECTED.items()}
    assert tags == expected


@pytest.mark.parametrize("fmt", ["mp3", "flac", "ogg", "opus", "m4a", "alac", "wav", "aiff"])
def test_untagged_files_have_empty_tags(audio_factory: AudioFactory, fmt: str) -> None:
    tags = analyze(audio_factory(fmt)).tags
    assert tags.title is None and tags.artist is None and tags.genres == []


@pytest.mark.parametrize("fmt", ["mp3", "flac", "ogg", "opus", "m4a", "alac"])
def test_artwork_and_thumbnail(audio_factory: AudioFactory, fmt: str) -> None:
    result = analyze(audio_factory(fmt, artwork=True))
    assert result.artwork.present is True
    assert (result.artwork.width, result.artwork.height) == (800, 640)
    assert result.thumbnail is not None
    with Image.open(io.BytesIO(result.thumbnail)) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.size == (600, 480)  # fits in 600x600, aspect kept
    assert result.warnings == []


def test_small_artwork_is_not_enlarged() -> None:
    info, thumb, note = make_thumbnail(png_bytes((120, 90)))
    assert (info.present, info.width, info.height, note) == (True, 120, 90, None)
    assert thumb is not None
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.size == (120, 90)


def test_transparent_artwork_becomes_a_jpeg() -> None:
    buf = io.BytesIO()
    Image.new("RGBA", (700, 700), (255, 0, 0, 0)).save(buf, "PNG")
    info, thumb, _ = make_thumbnail(buf.getvalue())
    assert info.present and thumb is not None
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.size == (600, 600)
        assert image.getpixel((10, 10)) == pytest.approx((255, 255, 255), abs=3)  # flattened on white


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims huge dimensions but holds almost nothing: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def with_apic(audio_factory: AudioFactory, tmp_path: Path, picture: bytes) -> Path:
    path = audio_factory.copy("mp3", tmp_path / "art.mp3", tags={"title": "With art"})
    tags = ID3(path)
    tags.add(APIC(encoding=3, mime="image/png", type=3, desc="cover", data=picture))
    tags.save(path)
    return path


def test_decompression_bomb_artwork_is_ignored_with_a_warning(audio_factory: AudioFactory, tmp_path: Path) -> None:
    assert Image.MAX_IMAGE_PIXELS is not None  # the guard stays on
    result = analyze(with_apic(audio_factory, tmp_path, png_header_only(40000, 40000)))
    assert result.tags.title == "With art"  # the ingest itself succeeds
    assert result.artwork.present is False
    assert result.thumbnail is None
    assert any("decompression bomb" in w for w in result.warnings)


def test_artwork_over_the_pixel_limit_is_ignored() -> None:
    bomb = png_header_only(10000, 10000)  # 100 M pixels: over MAX_IMAGE_PIXELS, under Pillow's 2x error
    with pytest.warns(Image.DecompressionBombWarning):
        info, thumb, note = make_thumbnail(bomb)
    assert (info.present, thumb) == (False, None)
    assert note is not None and "decompression bomb" in note


def test_broken_artwork_is_ignored_with_a_warning(audio_factory: AudioFactory, tmp_path: Path) -> None:
    result = analyze(with_apic(audio_factory, tmp_path, b"\x89PNG\r\n\x1a\nnot really"))
    assert result.artwork.present is False
    assert result.thumbnail is None
    assert any("cannot be read" in w for w in result.warnings)


def test_front_cover_is_preferred(audio_factory: AudioFactory, tmp_path: Path) -> None:
    path = audio_factory.copy("mp3", tmp_path / "two.mp3")
    tags = ID3(path)
    tags.add(APIC(encoding=3, mime="image/png", type=4, desc="back", data=png_bytes((100, 100))))
    tags.add(APIC(encoding=3, mime="image/png", type=3, desc="front", data=png_bytes((300, 200))))
    tags.save(path)
    assert (analyze(path).artwork.width, analyze(path).artwork.height) == (300, 200)


# --- tag families in detail ---------------------------------------------------------------------


def test_id3_numeric_genres_year_frames_and_comments(audio_factory: AudioFactory, tmp_path: Path) -> None:
    path = audio_factory.copy("mp3", tmp_path / "v23.mp3")
    tags = ID3()
    tags.add(TIT2(encoding=3, text=["  Padded\x00 "]))
    tags.add(TPE1(encoding=3, text=[""]))
    tags.add(TCON(encoding=3, text=["(17)(8)"]))  # ID3v1 numeric genres: Rock, Jazz
    tags.add(TYER(encoding=3, text=["1999"]))
    tags.add(TRCK(encoding=3, text=["07/10"]))
    tags.add(COMM(encoding=3, lang="eng", desc="iTunNORM", text=["00000 0000"]))
    tags.add(COMM(encoding=3, lang="eng", desc="", text=["A real comment"]))
    tags.save(path, v2_version=3)
    result = analyze(path)
    assert result.tags.title == "Padded"
    assert result.tags.artist is None
    assert result.tags.genres == ["Rock", "Jazz"]
    assert result.tags.year == 1999
    assert result.tags.track_number == 7
    assert result.tags.comment == "A real comment"


def test_vorbis_comments_with_several_genres_and_label(audio_factory: AudioFactory, tmp_path: Path) -> None:
    path = audio_factory.copy("ogg", tmp_path / "v.ogg")
    audio = OggVorbis(path)
    audio["GENRE"] = ["Ambient", "Drone", "ambient"]
    audio["ORGANIZATION"] = ["Org Records"]
    audio["DATE"] = ["2003"]
    audio["TRACKNUMBER"] = ["5"]
    audio["DESCRIPTION"] = ["desc"]
    audio.save()
    tags = analyze(path).tags
    assert tags.genres == ["Ambient", "Drone"]
    assert tags.label == "Org Records"
    assert (tags.year, tags.track_number, tags.comment) == (2003, 5, "desc")


def test_ogg_picture_from_metadata_block_picture(audio_factory: AudioFactory, tmp_path: Path) -> None:
    path = audio_factory.copy("opus", tmp_path / "p.opus")
    pic = Picture()
    pic.type, pic.mime, pic.data = 3, "image/png", png_bytes((640, 640))
    audio = __import__("mutagen.oggopus", fromlist=["OggOpus"]).OggOpus(path)
    audio["METADATA_BLOCK_PICTURE"] = ["!!not base64!!", base64.b64encode(pic.write()).decode()]
    audio.save()
    result = analyze(path)
    assert (result.artwork.present, result.artwork.width) == (True, 640)


def test_mp4_freeform_label_isrc_and_genres(audio_factory: AudioFactory, tmp_path: Path) -> None:
    path = audio_factory.copy("m4a", tmp_path / "f.m4a")
    audio = MP4(path)
    audio["----:com.apple.iTunes:LABEL"] = [MP4FreeForm(b"Free Label")]
    audio["----:com.apple.iTunes:ISRC"] = [MP4FreeForm(b"GB-AAA-00-00001")]
    audio["\xa9gen"] = ["Rock", "Soul"]
    audio["trkn"] = [(4, 9)]
    audio["disk"] = [(2, 2)]
    audio.save()
    tags = analyze(path).tags
    assert tags.label == "Free Label"
    assert tags.isrc == "GBAAA0000001"
    assert tags.genres == ["Rock", "Soul"]
    assert (tags.track_number, tags.disc_number) == (4, 2)


def test_wav_riff_info_and_id3_are_merged(audio_factory: AudioFactory, tmp_path: Path) -> None:
    path = audio_factory.copy("wav", tmp_path / "m.wav", tags={"title": "Info Title", "artist": "Info Artist"})
    audio = WAVE(path)
    audio.add_tags()
    audio.tags.add(TIT2(encoding=3, text=["ID3 Title"]))
    audio.save()
    tags = analyze(path).tags
    assert tags.title == "ID3 Title"  # ID3 wins
    assert tags.artist == "Info Artist"  # INFO fills the gap


def test_mp3_with_wrong_name_gets_a_warning(audio_factory: AudioFactory) -> None:
    result = analyze(audio_factory("flac"), original_filename="song.mp3")
    assert result.extension == "flac"
    assert any("named .mp3" in w for w in result.warnings)
    assert analyze(audio_factory("ogg"), original_filename="x.OGG").warnings == []


# --- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["truncated", "empty", "png_as_mp3", "random", "text"])
def test_bad_files_fail_with_invalid_format(audio_factory: AudioFactory, kind: str) -> None:
    with pytest.raises(InvalidFormat):
        analyze(audio_factory.bad(kind))


def test_truncated_flac_is_invalid(audio_factory: AudioFactory, tmp_path: Path) -> None:
    data = audio_factory("flac", artwork=True).read_bytes()
    cut = tmp_path / "cut.flac"
    cut.write_bytes(data[:2000])  # inside the picture block
    with pytest.raises(InvalidFormat, match="truncated"):
        analyze(cut)


def test_corrupt_mp4_is_invalid(audio_factory: AudioFactory, tmp_path: Path) -> None:
    data = audio_factory("m4a").read_bytes()
    bad = tmp_path / "bad.m4a"
    bad.write_bytes(data[:40])
    with pytest.raises(InvalidFormat, match="M4A"):
        analyze(bad)


def test_missing_file_is_not_found_and_a_folder_invalid(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        analyze(tmp_path / "nope.mp3")
    with pytest.raises(InvalidArgument):
        analyze(tmp_path)


# --- large files and the process pool -----------------------------------------------------------


def test_large_file_is_hashed_in_chunks_and_read_from_disk(audio_factory: AudioFactory) -> None:
    path = audio_factory("wav", duration=8.0, tags={"title": "Long"})
    assert path.stat().st_size > 1024 * 1024 * 1.2
    result = analyze(path)
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result.audio.duration_s == pytest.approx(8.0, abs=0.01)
    assert result.tags.title == "Long"


def test_analysis_is_picklable(audio_factory: AudioFactory) -> None:
    result = analyze(audio_factory("mp3", tags=FULL_TAGS, artwork=True))
    again = pickle.loads(pickle.dumps(result))
    assert isinstance(again, Analysis)
    assert again == result


def test_mp3_id3_round_trip_matches_mutagen(audio_factory: AudioFactory) -> None:
    path = audio_factory("mp3", tags=FULL_TAGS)
    assert analyze(path).audio.duration_s == pytest.approx(MP3(path).info.length)


# --- helpers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "year"),
    [("2019", 2019), ("2019-05-01", 2019), ("01/05/2019", 2019), ("2019-05-01T10:00", 2019), ("", None),
     ("abc", None), ("12345", None), ("0000", None)],
)
def test_parse_year(text: str, year: int | None) -> None:
    assert parse_year(text) == year


@pytest.mark.parametrize(("text", "number"), [("3", 3), ("03/12", 3), (" 7 ", 7), ("0", None), ("x", None)])
def test_parse_number(text: str, number: int | None) -> None:
    assert parse_number(text) == number


def test_clean_text_and_genres() -> None:
    assert clean_text("  a\x00 ") == "a"
    assert clean_text(" \x00 ") is None
    assert split_genres(["Rock; Pop", "rock", "", "Jazz\x00Blues"]) == ["Rock", "Pop", "Jazz", "Blues"]


def test_aifc_names_its_encoding(tmp_path: Path) -> None:
    dest = tmp_path / "le.aifc"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i", "sine=duration=0.3",
         "-c:a", "pcm_s16le", "-f", "aiff", str(dest)],
        check=True,
    )
    result = analyze(dest)
    assert (result.extension, result.audio.codec, result.audio.bit_depth) == ("aiff", "pcm_s16le", 16)


def test_wma_picture(audio_factory: AudioFactory, tmp_path: Path) -> None:
    from mutagen.asf import ASF, ASFByteArrayAttribute

    path = audio_factory.copy("wma", tmp_path / "p.wma")
    data = png_bytes((320, 240))
    mime = "image/png".encode("utf-16-le") + b"\x00\x00"
    desc = "front".encode("utf-16-le") + b"\x00\x00"
    audio = ASF(path)
    audio["WM/Picture"] = [ASFByteArrayAttribute(bytes([3]) + struct.pack("<I", len(data)) + mime + desc + data)]
    audio.save()
    result = analyze(path)
    assert (result.artwork.present, result.artwork.width, result.artwork.height) == (True, 320, 240)
