"""Real audio made with ffmpeg at test time (no binary fixtures in the repo).

``make_audio(dest_dir, fmt, ...)`` encodes a short sine tone in one of the formats Loist reads and
returns its path; identical requests return the same file (the name is a hash of the request), so
the session-scoped ``audio_factory`` fixture makes each variant once per session. ``make_bad_file``
makes the broken inputs ingest must refuse.

Tags are ffmpeg ``-metadata`` keys (title, artist, album, album_artist, genre, date, track, disc,
composer, publisher, comment, ...), passed through as given so a test says exactly what is written.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
from PIL import Image

FORMATS: dict[str, tuple[str, list[str]]] = {
    # name: (extension, ffmpeg output arguments)
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k", "-id3v2_version", "3"]),
    "flac": ("flac", ["-c:a", "flac"]),
    "ogg": ("ogg", ["-c:a", "libvorbis", "-q:a", "2"]),
    "opus": ("opus", ["-c:a", "libopus", "-b:a", "64k"]),
    "m4a": ("m4a", ["-c:a", "aac", "-b:a", "128k"]),
    "alac": ("m4a", ["-c:a", "alac"]),
    "wav": ("wav", ["-c:a", "pcm_s16le"]),
    "aiff": ("aiff", ["-c:a", "pcm_s16be", "-write_id3v2", "1"]),
    "wv": ("wv", ["-c:a", "wavpack"]),
    "wma": ("wma", ["-c:a", "wmav2", "-b:a", "64k"]),
    "spx": ("spx", ["-c:a", "libspeex"]),
}
# Containers where ffmpeg writes an attached picture itself; ogg/opus get one through mutagen.
FFMPEG_ARTWORK = {"mp3", "flac", "m4a", "alac"}
MUTAGEN_ARTWORK = {"ogg", "opus"}
BAD_KINDS = ("truncated", "empty", "png_as_mp3", "random", "text")


def make_png(dest: Path, size: tuple[int, int] = (800, 640), color: tuple[int, int, int] = (200, 40, 90)) -> Path:
    """A PNG cover (larger than the 600x600 thumbnail so resizing is exercised)."""
    image = Image.new("RGB", size, color)
    for x in range(0, size[0], 40):  # a pattern, so the encoded picture is not trivially small
        for y in range(0, size[1], 40):
            image.putpixel((x, y), (255, 255, 255))
    image.save(dest, "PNG")
    return dest


def png_bytes(size: tuple[int, int] = (800, 640)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def make_audio(
    dest_dir: Path,
    fmt: str,
    *,
    tags: Mapping[str, str] | None = None,
    artwork: bool = False,
    duration: float = 1.0,
    sample_rate: int = 44100,
    channels: int = 2,
) -> Path:
    """Encode a sine tone as ``fmt`` (see FORMATS) and return its path (cached by parameters)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown test audio format {fmt!r}; one of {sorted(FORMATS)}")
    ext, codec_args = FORMATS[fmt]
    if fmt == "opus":
        sample_rate = 48000  # the only rate libopus encodes at
    elif fmt == "spx":
        sample_rate = min(sample_rate, 32000) if sample_rate in (8000, 16000, 32000) else 16000
    key = json.dumps([fmt, sorted((tags or {}).items()), artwork, duration, sample_rate, channels])
    name = f"{fmt}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.{ext}"  # noqa: S324 - cache key
    dest = Path(dest_dir) / name
    if dest.exists():
        return dest
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.stem + ".partial." + ext)
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
           f"sine=frequency=440:sample_rate={sample_rate}:duration={duration}"]
    with_pic = artwork and fmt in FFMPEG_ARTWORK
    if with_pic:
        cover = make_png(dest_dir / f"cover-{name}.png")
        cmd += ["-i", str(cover), "-map", "0:a", "-map", "1:v", "-disposition:v", "attached_pic"]
        cmd += ["-c:v", "mjpeg"] if fmt in ("m4a", "alac") else ["-c:v", "png"]
    cmd += ["-ac", str(channels), "-ar", str(sample_rate), *codec_args]
    for key_, value in (tags or {}).items():
        cmd += ["-metadata", f"{key_}={value}"]
    if fmt == "wav":
        cmd += ["-write_bext", "0", "-rf64", "never"]
    cmd.append(str(partial))
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        if artwork and fmt in MUTAGEN_ARTWORK:
            _add_ogg_picture(partial, fmt, dest_dir / f"cover-{name}.png")
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(dest)
    return dest


def _add_ogg_picture(path: Path, fmt: str, cover_path: Path) -> None:
    from mutagen.flac import Picture
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis

    make_png(cover_path)
    pic = Picture()
    pic.type = 3
    pic.mime = "image/png"
    pic.width, pic.height, pic.depth = 800, 640, 24
    pic.data = cover_path.read_bytes()
    audio = (OggOpus if fmt == "opus" else OggVorbis)(path)
    audio["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode("ascii")]
    audio.save()


def make_bad_file(dest_dir: Path, kind: str, *, source_mp3: Path | None = None) -> Path:
    """Inputs that are not usable audio: truncated, empty, a PNG named .mp3, random bytes, text."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"bad-{kind}.mp3"
    if kind == "truncated":
        src = source_mp3 or make_audio(dest_dir, "mp3")
        dest.write_bytes(src.read_bytes()[:300])
    elif kind == "empty":
        dest.write_bytes(b"")
    elif kind == "png_as_mp3":
        dest.write_bytes(png_bytes((64, 64)))
    elif kind == "random":
        dest.write_bytes(random.Random(1234).randbytes(64 * 1024))
    elif kind == "text":
        dest.write_bytes(b"This is not music, just some notes about music.\n" * 20)
    else:
        raise ValueError(f"unknown bad-file kind {kind!r}; one of {BAD_KINDS}")
    return dest


def distinct_mp3s(folder: Path, count: int, base: bytes) -> list[Path]:
    """``count`` files ``000.mp3``... in ``folder``: ``base`` (an MP3's bytes) with an appended
    ID3v1-sized tail that makes each one's content, and so its sha256, distinct. Cheap: no ffmpeg."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i:03d}.mp3" for i in range(count)]
    for i, path in enumerate(paths):
        path.write_bytes(base + b"TAG" + f"{i:<125}".encode())
    return paths


class AudioFactory:
    """Session cache of generated audio: ``factory("flac", tags={...}, artwork=True)``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, fmt: str, **kwargs: object) -> Path:
        return make_audio(self.root, fmt, **kwargs)  # type: ignore[arg-type]

    def bad(self, kind: str) -> Path:
        return make_bad_file(self.root / "bad", kind)

    def copy(self, fmt: str, dest: Path, **kwargs: object) -> Path:
        """A private copy (for tests that modify or rename the file)."""
        return Path(shutil.copyfile(self(fmt, **kwargs), dest))


@pytest.fixture(scope="session")
def audio_factory(tmp_path_factory: pytest.TempPathFactory) -> AudioFactory:
    if shutil.which("ffmpeg") is None:  # pragma: no cover - ffmpeg is a stated requirement
        pytest.fail("ffmpeg is required to make test audio")
    return AudioFactory(tmp_path_factory.mktemp("audio"))
