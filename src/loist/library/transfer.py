"""Moving a library between environments: ``loist export`` (optionally anonymised) and ``loist import``.

The file is JSON Lines: one header line, then one line per track (``{"track": {...}}``, the
:class:`~loist.model.Track` fields unchanged). Only COMPLETED tracks travel: FAILED records hold
nothing but a source and an error message, which staging does not need.

**Anonymisation** (``--anonymize``) replaces everything that can identify a person or a private
source with an HMAC-SHA256 of the original under one key (``--salt`` / ``EXPORT_SALT``, else a
random key per export): the same value always maps to the same replacement within an export, so
duplicates stay duplicates, and nothing can be reversed without the key. Replaced: the source
location (URL host, path and every query value, e.g. signed-link tokens; or a file path), the
original filename, the comment tag and the error message. Caller-supplied request headers are
never stored by Loist, so they cannot leak (a test proves it). Loist stores no user ids; the
header lists every replaced field so a new identifying field has an obvious home. Kept: public
catalogue tags (title, artist, album, ...), technical properties, sha256 and blob keys, ids.

**Import** loads the lines into the current library. Blobs are copied from a source store
(``--source-bucket`` on GCS, ``--source-dir`` for a local store) when allowed, else regenerated
as silence of the same duration and format (ffmpeg; WAV when the format cannot be encoded),
which gives them a new sha256 and blob key. Importing the same file twice adds nothing: a track
id already present is skipped, and regenerated silence is deterministic per track id. Everything
goes through the library's public methods: blobs through ``Library.blob_writer`` (which records
what it created), rows ``IMPORT_BATCH`` at a time through ``Library.import_tracks``; a batch that
fails deletes the blobs it created and raises, so running the import again finishes the job.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import ValidationError

from loist.errors import InvalidArgument, LoistError, NotFound
from loist.library.bulk import NewBlobs
from loist.library.service import Library
from loist.library.synthetic import SYNTHETIC_BLOB_KEY, write_wav
from loist.model import AudioInfo, Source, Track, TrackStatus
from loist.storage import open_blob_store
from loist.storage.base import BlobStore, audio_key, thumbnail_key

FORMAT_NAME = "loist-export"
FORMAT_VERSION = 1
IMPORT_BATCH = 100  # rows per transaction on import
IMPORT_TEMP_PREFIX = "loist-import-"  # the temp folder of an import (loist fsck finds leftovers)
ANON_HOST = "anon.invalid"  # RFC 2606: can never resolve, so an anonymised URL is never fetched
ANONYMIZED_FIELDS = (
    "source.location",
    "source.original_filename",
    "tags.comment",
    "error_message",
)

BlobMode = Literal["copy", "silence"]

#: format -> (extension, ffmpeg arguments) for regenerated silence.
SILENCE_CODECS: dict[str, tuple[str, list[str]]] = {
    "mp3": ("mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
    "flac": ("flac", ["-c:a", "flac"]),
    "ogg": ("ogg", ["-c:a", "libvorbis", "-q:a", "0"]),
    "opus": ("opus", ["-c:a", "libopus", "-b:a", "32k"]),
    "m4a": ("m4a", ["-c:a", "aac", "-b:a", "64k"]),
    "wav": ("wav", ["-c:a", "pcm_s16le", "-rf64", "never"]),
    "aiff": ("aiff", ["-c:a", "pcm_s16be"]),
    "wv": ("wv", ["-c:a", "wavpack"]),
}


# --- anonymisation ------------------------------------------------------------------------------


class Anonymizer:
    """Deterministic replacements keyed by one secret (HMAC-SHA256)."""

    def __init__(self, salt: str | None) -> None:
        self._key = (salt or secrets.token_hex(32)).encode()
        self.salt_given = bool(salt)

    def digest(self, kind: str, value: str, length: int = 20) -> str:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()[:length]

    @property
    def key_id(self) -> str:
        """Tells two exports made with the same key apart from others, without revealing it."""
        return self.digest("key-id", "loist")[:12]

    def url(self, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            suffix = PurePosixPath(parts.path).suffix.lower()[:8]
            path = f"/{self.digest('path', parts.path)}{suffix if suffix.isascii() else ''}"
            query = urlencode([(k, self.digest("query", v, 16)) for k, v in parse_qsl(parts.query, keep_blank_values=True)])
            host = f"{self.digest('host', parts.netloc.lower(), 12)}.{ANON_HOST}"
            return f"https://{host}{path}" + (f"?{query}" if query else "")
        # a file path (or anything else): keep only the extension
        return f"file:///anonymized/{self.digest('path', value)}{_ext(value)}"

    def filename(self, value: str) -> str:
        return f"{self.digest('filename', value, 16)}{_ext(value)}"

    def text(self, kind: str, value: str) -> str:
        return f"anonymized-{self.digest(kind, value, 16)}"

    def track(self, track: Track) -> Track:
        source = track.source
        new_source = Source(
            type=source.type,
            location=self.url(source.location) if source.location else None,
            original_filename=self.filename(source.original_filename) if source.original_filename else None,
        )
        tags = track.tags
        if tags.comment:
            tags = tags.model_copy(update={"comment": self.text("comment", tags.comment)})
        message = self.text("error", track.error_message) if track.error_message else None
        return track.model_copy(update={"source": new_source, "tags": tags, "error_message": message})


def _ext(value: str) -> str:
    suffix = PurePosixPath(value.split("?", 1)[0]).suffix.lower()
    return suffix if 1 < len(suffix) <= 6 and suffix[1:].isalnum() else ""


# --- export -------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    path: str
    tracks: int = 0
    anonymized: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "tracks": self.tracks, "anonymized": self.anonymized}


def export_header(library: Library, anonymizer: Anonymizer | None) -> dict[str, Any]:
    from loist import __version__

    settings = library.settings
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "loist_version": __version__,
        "exported_at": datetime.now(UTC).isoformat(),
        "source": {
            "environment": settings.environment,
            "database": settings.database_dialect,
            "storage": settings.storage_backend,
            "bucket": settings.gcs_bucket_name if settings.storage_backend == "gcs" else None,
        },
        "schema": {
            "track_fields": list(Track.model_fields),
            "audio_fields": list(AudioInfo.model_fields),
            "statuses": [TrackStatus.COMPLETED.value],
        },
        "anonymized": anonymizer is not None,
        "anonymized_fields": list(ANONYMIZED_FIELDS) if anonymizer is not None else [],
        "key_id": anonymizer.key_id if anonymizer is not None else None,
    }


async def export_library(library: Library, out: TextIO, *, anonymize: bool = False, salt: str | None = None) -> int:
    """Write the header and every COMPLETED track to ``out``; return the number of tracks."""
    anonymizer = Anonymizer(salt) if anonymize else None
    out.write(json.dumps(export_header(library, anonymizer), ensure_ascii=False) + "\n")
    count = 0
    async for track in library.iter_tracks(status=TrackStatus.COMPLETED):
        if anonymizer is not None:
            track = anonymizer.track(track)
        out.write(json.dumps({"track": track.model_dump(mode="json")}, ensure_ascii=False) + "\n")
        count += 1
    return count


async def export_to_file(library: Library, path: Path, *, anonymize: bool = False, salt: str | None = None) -> ExportReport:
    """Export into ``path`` atomically (a partial file never replaces a good one)."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            count = await export_library(library, handle, anonymize=anonymize, salt=salt)
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InvalidArgument(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ExportReport(path=str(path), tracks=count, anonymized=anonymize)


# --- import -------------------------------------------------------------------------------------


@dataclass
class ImportReport:
    read: int = 0
    created: int = 0
    existing: int = 0
    copied: int = 0
    regenerated: int = 0
    fell_back: int = 0  # copy was asked for but not possible: regenerated instead
    failed: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"read": self.read, "created": self.created, "existing": self.existing, "copied": self.copied,
                "regenerated": self.regenerated, "fell_back": self.fell_back, "failed": self.failed}


def read_export(path: Path) -> tuple[dict[str, Any], Iterator[Track]]:
    """The header and a lazy iterator of tracks; INVALID_ARGUMENT for anything that is not an export."""
    try:
        handle = path.open("r", encoding="utf-8")
    except OSError as exc:
        raise NotFound(f"cannot open {path}: {exc.strerror or exc}") from None
    first = handle.readline()
    try:
        header = json.loads(first)
    except json.JSONDecodeError:
        handle.close()
        raise InvalidArgument(f"{path} is not a Loist export: the first line is not JSON") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        handle.close()
        raise InvalidArgument(f"{path} is not a Loist export (no {FORMAT_NAME!r} header line)")
    if header.get("version") != FORMAT_VERSION:
        handle.close()
        raise InvalidArgument(f"{path} is export version {header.get('version')}; this Loist reads version {FORMAT_VERSION}")

    def tracks() -> Iterator[Track]:
        with handle:
            for number, line in enumerate(handle, start=2):
                if not line.strip():
                    continue
                try:
                    yield Track.model_validate(json.loads(line)["track"])
                except (json.JSONDecodeError, KeyError, TypeError, ValidationError) as exc:
                    raise InvalidArgument(f"{path} line {number} is not a track: {str(exc).splitlines()[0]}") from None

    return header, tracks()


def source_store(library: Library, *, source_bucket: str | None, source_dir: Path | None) -> BlobStore | None:
    """The store blobs are copied from (built by the storage factory), or None for none."""
    if source_bucket and source_dir:
        raise InvalidArgument("give --source-bucket or --source-dir, not both")
    if source_bucket:
        update = {"storage_backend": "gcs", "gcs_bucket_name": source_bucket}
    elif source_dir:
        if not source_dir.is_dir():
            raise NotFound(f"--source-dir {source_dir} is not a folder")
        update = {"storage_backend": "local", "storage_path": source_dir}
    else:
        return None
    return open_blob_store(library.settings.model_copy(update=update))


class Importer:
    """Loads tracks into one library; blobs by copy or regenerated silence.

    Each track's blobs are written through its own writer from :meth:`Library.blob_writer`, and
    rows go in through :meth:`Library.import_tracks` a batch at a time: a track that fails to
    prepare, or a batch whose rows fail to go in, leaves none of the blobs it created behind.
    """

    def __init__(self, library: Library, mode: BlobMode, source: BlobStore | None, workdir: Path) -> None:
        if mode == "copy" and source is None:
            raise InvalidArgument("--blobs copy needs --source-bucket (GCS) or --source-dir (a local blob folder)")
        self.library = library
        self.mode = mode
        self.source = source
        self.workdir = workdir
        self.report = ImportReport()

    async def run(self, tracks: Iterator[Track]) -> ImportReport:
        batch: list[tuple[Track, NewBlobs]] = []
        for track in tracks:
            self.report.read += 1
            if await self._present(track):
                self.report.existing += 1
                continue
            blobs = self.library.blob_writer()
            try:
                prepared = await self.prepare(track, blobs)
            except LoistError as exc:
                await self.library.discard(blobs)
                self.report.failed.append({"id": str(track.id), "code": str(exc.code), "message": exc.message})
                continue
            batch.append((prepared, blobs))
            if len(batch) >= IMPORT_BATCH:
                await self._add(batch)
                batch = []
        if batch:
            await self._add(batch)
        return self.report

    async def _present(self, track: Track) -> bool:
        try:
            await self.library.get(track.id)
        except NotFound:
            return False
        return True

    async def _add(self, batch: list[tuple[Track, NewBlobs]]) -> None:
        for _track, created in await self.library.import_tracks(batch):
            if created:
                self.report.created += 1
            else:
                self.report.existing += 1

    async def prepare(self, track: Track, blobs: NewBlobs) -> Track:
        """The track as it will be stored here, its blobs put in place through ``blobs``."""
        now = datetime.now(UTC)
        source = track.source.model_copy(update={"type": "import"})
        base = track.model_copy(update={"source": source, "updated_at": now})
        if track.blob_key == SYNTHETIC_BLOB_KEY:
            await self.library.ensure_synthetic_blob(blobs)
            self.report.regenerated += 1
            return base
        if self.mode == "copy":
            try:
                await self.library.storage_pool.run(self._copy_blobs, track, blobs)
                self.report.copied += 1
                return base
            except LoistError:
                await self.library.discard(blobs)  # half a copy (audio without its thumbnail) goes
                self.report.fell_back += 1
        return await self.library.storage_pool.run(self._regenerate, base, blobs)

    def _copy_blobs(self, track: Track, blobs: NewBlobs) -> None:
        assert self.source is not None
        for key in (track.blob_key, track.thumbnail_key):
            if not key or blobs.exists(key):
                continue
            with tempfile.NamedTemporaryFile(dir=self.workdir, delete=False) as tmp:
                local = Path(tmp.name)
            try:
                info = self.source.stat(key)
                self.source.download_to(key, local)
                blobs.put_file(key, local, info.content_type)
            finally:
                local.unlink(missing_ok=True)

    def _regenerate(self, track: Track, blobs: NewBlobs) -> Track:
        duration = track.audio.duration_s if track.audio.duration_s and track.audio.duration_s > 0 else 1.0
        fmt = (track.audio.format or "").lower()
        path, audio = silence(self.workdir, track.id.hex, fmt, duration, track.audio)
        try:
            data_sha, size = _sha256_file(path)
            key = audio_key(data_sha, path.suffix)
            blobs.put_file(key, path, audio.mime_type)
        finally:
            path.unlink(missing_ok=True)
        thumb: str | None = None
        if track.thumbnail_key or track.artwork.present:
            thumb = thumbnail_key(data_sha)
            blobs.put_bytes(thumb, placeholder_jpeg(track.id.hex), "image/jpeg")
        self.report.regenerated += 1
        return track.model_copy(update={"sha256": data_sha, "size_bytes": size, "blob_key": key,
                                        "thumbnail_key": thumb, "audio": audio})


def _sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def silence(workdir: Path, marker: str, fmt: str, duration: float, audio: AudioInfo) -> tuple[Path, AudioInfo]:
    """Encode silence like the original (format, duration, rate, channels); WAV when that fails.

    ``marker`` (the track id) goes into a tag, so each track's silence has its own bytes and
    sha256 (two tracks of equal length must not collapse into one), the same on every import.
    """
    channels = audio.channels if audio.channels in (1, 2) else 2
    rate = audio.sample_rate_hz or 44100
    if fmt == "opus":
        rate = 48000
    if fmt in SILENCE_CODECS and shutil.which("ffmpeg"):
        ext, codec = SILENCE_CODECS[fmt]
        if fmt == "m4a" and (audio.codec or "").lower() == "alac":
            codec = ["-c:a", "alac"]
        out = workdir / f"silence-{marker}.{ext}"
        layout = "mono" if channels == 1 else "stereo"
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f", "lavfi", "-i",
               f"anullsrc=channel_layout={layout}:sample_rate={rate}", "-t", f"{duration:.3f}",
               *codec, "-fflags", "+bitexact", "-flags:a", "+bitexact",
               "-metadata", f"comment=loist-import {marker}", str(out)]
        done = subprocess.run(cmd, capture_output=True, timeout=300, check=False)  # noqa: S603 - fixed argv
        if done.returncode == 0 and out.exists() and out.stat().st_size > 0:
            return out, audio
        out.unlink(missing_ok=True)
    out = workdir / f"silence-{marker}.wav"
    with out.open("wb") as handle:
        write_wav(handle, duration, rate=rate, channels=channels, sample_width=2, marker=marker)
    return out, AudioInfo(
        mime_type="audio/wav", format="wav", codec="pcm_s16le", duration_s=duration, channels=channels,
        sample_rate_hz=rate, bitrate_bps=rate * channels * 16, bit_depth=16,
    )


def placeholder_jpeg(marker: str) -> bytes:
    """A plain square cover for a track whose artwork was not copied."""
    from PIL import Image

    shade = int(marker[:2], 16) if marker[:2].isalnum() else 128
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), (shade, 90, 160)).save(buf, "JPEG", quality=80)
    return buf.getvalue()


async def import_file(
    library: Library,
    path: Path,
    *,
    blobs: BlobMode | None = None,
    source_bucket: str | None = None,
    source_dir: Path | None = None,
    progress: Callable[[ImportReport], None] | None = None,
) -> ImportReport:
    """Import an export file into ``library``. ``blobs`` defaults to copy when a source is given."""
    header, tracks = read_export(path)
    store = source_store(library, source_bucket=source_bucket, source_dir=source_dir)
    mode: BlobMode = blobs or ("copy" if store is not None else "silence")
    with tempfile.TemporaryDirectory(prefix=IMPORT_TEMP_PREFIX) as tmp:
        importer = Importer(library, mode, store, Path(tmp))
        report = await importer.run(tracks)
    if progress is not None:
        progress(report)
    return report
