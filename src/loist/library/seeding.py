"""Real-audio seed data (``loist seed --audio N``): several formats, with tags and artwork.

Why real audio: the functional checks of an environment (play a stream, unfurl an embed, read a
thumbnail) need blobs that decode; the metadata-only ``--synthetic`` tracks are for scale only.
Files are encoded with ffmpeg (a sine tone per track, its frequency and length picked from the
seed) with ``-fflags +bitexact`` so the same seed yields the same bytes, hence the same sha256:
seeding twice adds nothing the second time. They are ingested through the library like any
other files, so seeding exercises the real ingest path (sniffing, tags, artwork, thumbnails).
"""

from __future__ import annotations

import base64
import io
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from loist.errors import InvalidArgument, LoistError
from loist.library.pipeline import IngestOutcome
from loist.library.service import Library

#: format -> (extension, ffmpeg encoder arguments). The order is the cycle ``--audio N`` uses.
SEED_FORMATS: dict[str, tuple[str, list[str]]] = {
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k", "-id3v2_version", "3"]),
    "flac": ("flac", ["-c:a", "flac"]),
    "ogg": ("ogg", ["-c:a", "libvorbis", "-q:a", "2"]),
    "m4a": ("m4a", ["-c:a", "aac", "-b:a", "128k"]),
    "opus": ("opus", ["-c:a", "libopus", "-b:a", "64k"]),
    "wav": ("wav", ["-c:a", "pcm_s16le", "-rf64", "never"]),
}
FFMPEG_PICTURE = {"mp3", "flac", "m4a"}  # ffmpeg writes an attached picture; ogg/opus get one via mutagen
MAX_SEED_TRACKS = 500

_WORDS = (
    "amber", "borrowed", "cobalt", "distant", "electric", "fading", "golden", "hollow", "iron", "june",
    "kestrel", "lantern", "midnight", "northern", "orchard", "paper", "quiet", "river", "silver", "tidal",
    "umber", "velvet", "winter", "yellow", "zephyr",
)
_ARTISTS = ("The Loist Ensemble", "Mara Quill", "Staging Orchestra", "Dot Matrix Trio", "Seed & Sons")
_GENRES = ("Ambient", "Jazz", "Rock", "Electronic", "Folk", "Classical")


@dataclass
class SeedTrack:
    """One file to make: its format, tags and tone."""

    fmt: str
    tags: dict[str, str]
    frequency: int
    seconds: float
    cover_rgb: tuple[int, int, int]


@dataclass
class SeedReport:
    created: int = 0
    existing: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    track_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"created": self.created, "existing": self.existing, "failed": self.failed,
                "formats": self.formats, "track_ids": self.track_ids}


def plan(n: int, *, seed: int = 0) -> list[SeedTrack]:
    """The tracks ``--audio n --seed seed`` makes (deterministic)."""
    if not 0 <= n <= MAX_SEED_TRACKS:
        raise InvalidArgument(f"--audio must be between 0 and {MAX_SEED_TRACKS}, got {n}")
    rng = random.Random(seed)  # noqa: S311 - test data, deterministic by design
    formats = list(SEED_FORMATS)
    out: list[SeedTrack] = []
    for i in range(n):
        artist = rng.choice(_ARTISTS)
        album = f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()}"
        title = f"{rng.choice(_WORDS).title()} {rng.choice(_WORDS).title()} ({seed}-{i})"
        tags = {
            "title": title,
            "artist": artist,
            "album_artist": artist,
            "album": album,
            "genre": rng.choice(_GENRES),
            "date": str(rng.randint(1965, 2025)),
            "track": str(i + 1),
            "composer": rng.choice(_ARTISTS),
            "comment": "seeded by loist seed --audio",
        }
        out.append(SeedTrack(
            fmt=formats[i % len(formats)],
            tags=tags,
            frequency=220 + 20 * i + rng.randint(0, 19),
            seconds=round(rng.uniform(2.0, 5.0), 1),
            cover_rgb=(rng.randint(0, 255), rng.randint(0, 255), rng.randint(0, 255)),
        ))
    return out


def _cover_png(path: Path, rgb: tuple[int, int, int]) -> Path:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (640, 640), rgb)
    draw = ImageDraw.Draw(image)
    for k in range(0, 640, 64):  # a pattern, so the picture is not a trivially small JPEG
        draw.line([(k, 0), (640 - k, 640)], fill=(255 - rgb[0], 255 - rgb[1], 255 - rgb[2]), width=6)
    image.save(path, "PNG")
    return path


def encode(track: SeedTrack, dest: Path) -> Path:
    """Encode one seed track with ffmpeg into ``dest`` (a folder); return the file."""
    if shutil.which("ffmpeg") is None:
        raise InvalidArgument("loist seed --audio needs ffmpeg on PATH (apt-get install ffmpeg)")
    ext, codec = SEED_FORMATS[track.fmt]
    rate = 48000 if track.fmt == "opus" else 44100
    stem = "".join(ch if ch.isalnum() else "-" for ch in track.tags["title"].lower()).strip("-")
    out = dest / f"{stem}.{ext}"
    cover = _cover_png(dest / f"{stem}-cover.png", track.cover_rgb)
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
           f"sine=frequency={track.frequency}:sample_rate={rate}:duration={track.seconds}"]
    if track.fmt in FFMPEG_PICTURE:
        cmd += ["-i", str(cover), "-map", "0:a", "-map", "1:v", "-disposition:v", "attached_pic",
                "-c:v", "mjpeg" if track.fmt == "m4a" else "png"]
    cmd += ["-ac", "2", "-ar", str(rate), *codec, "-fflags", "+bitexact", "-flags:a", "+bitexact"]
    for key, value in track.tags.items():
        cmd += ["-metadata", f"{key}={value}"]
    cmd.append(str(out))
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603 - fixed argv
    if done.returncode != 0:
        raise InvalidArgument(f"ffmpeg could not encode {track.fmt}: {done.stderr.strip()[:300]}")
    if track.fmt in ("ogg", "opus"):
        _ogg_picture(out, track.fmt, cover)
    return out


def _ogg_picture(path: Path, fmt: str, cover: Path) -> None:
    from mutagen.flac import Picture
    from mutagen.oggopus import OggOpus
    from mutagen.oggvorbis import OggVorbis
    from PIL import Image

    data = cover.read_bytes()
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
    pic = Picture()
    pic.type = 3  # front cover
    pic.mime = "image/png"
    pic.width, pic.height, pic.depth = width, height, 24
    pic.data = data
    audio = (OggOpus if fmt == "opus" else OggVorbis)(path)
    audio["METADATA_BLOCK_PICTURE"] = [base64.b64encode(pic.write()).decode("ascii")]
    audio.save()


async def seed_audio(library: Library, n: int, *, seed: int = 0, workdir: Path | None = None) -> SeedReport:
    """Encode ``n`` tracks and ingest them through ``library``; idempotent for a given seed."""
    tracks = plan(n, seed=seed)
    report = SeedReport()
    if not tracks:
        return report
    with tempfile.TemporaryDirectory(prefix="loist-seed-", dir=workdir) as tmp:
        folder = Path(tmp)
        files = [str(encode(track, folder)) for track in tracks]
        for track in tracks:
            report.formats[track.fmt] = report.formats.get(track.fmt, 0) + 1
        async for outcome in library.ingest_many(files):
            _count(report, outcome)
    return report


def _count(report: SeedReport, outcome: IngestOutcome) -> None:
    if outcome.error is not None:
        err: LoistError = outcome.error
        report.failed.append({"input": Path(outcome.input).name, "code": str(err.code), "message": err.message})
    elif outcome.track is not None:
        report.track_ids.append(str(outcome.track.id))
        if outcome.created:
            report.created += 1
        else:
            report.existing += 1
