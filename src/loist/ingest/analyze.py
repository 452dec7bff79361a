"""Everything Loist learns from an audio file's bytes, in one synchronous, picklable call.

``analyze`` runs in a process pool during bulk ingest, so it is a plain function over a path that
returns plain data. It is built to be cheap: the file is read once (a small file is hashed and
parsed from the same buffer; a large one is hashed in 1 MB chunks and mutagen then reads only the
headers and tags it needs); audio is never decoded. The format is decided by
:mod:`loist.ingest.sniff` from the bytes and the file is opened with that one mutagen class.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from mutagen import FileType
from mutagen.apev2 import APEv2
from mutagen.asf import ASF, ASFTags
from mutagen.id3 import ID3
from mutagen.mp4 import MP4, MP4Tags
from mutagen.wave import WAVE
from PIL import Image

from loist.errors import InvalidArgument, InvalidFormat, LoistError, NotFound
from loist.ingest import tags as tagread
from loist.ingest.sniff import Sniffed, sniff_file
from loist.model import ArtworkInfo, AudioInfo, Tags

CHUNK_BYTES = 1024 * 1024
THUMBNAIL_MAX = (600, 600)
LOSSY_CODECS = frozenset({"mp3", "aac", "vorbis", "opus", "wma", "speex", "musepack", "ac3"})


@dataclass
class Analysis:
    """The result of :func:`analyze` (plain, picklable data)."""

    sha256: str
    size_bytes: int
    extension: str
    audio: AudioInfo
    tags: Tags
    artwork: ArtworkInfo
    thumbnail: bytes | None = None
    warnings: list[str] = field(default_factory=list)


def analyze(path: Path, *, original_filename: str | None = None) -> Analysis:
    """Hash, recognise and read ``path``. Raises InvalidFormat for anything that is not usable audio."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InvalidArgument(f"not a file: {path}") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        head = handle.read(CHUNK_BYTES)
        digest = hashlib.sha256(head)
        size = len(head)
        if size == CHUNK_BYTES:
            while chunk := handle.read(CHUNK_BYTES):
                digest.update(chunk)
                size += len(chunk)
        if size == 0:
            raise InvalidFormat("the file is empty", details={"reason": "empty"})
        # A small file is parsed from the buffer already in memory; a large one from disk.
        source: BinaryIO = io.BytesIO(head) if size == len(head) else handle
        sniffed = sniff_file(source, head)
        source.seek(0)
        return _read(source, sniffed, digest.hexdigest(), size, original_filename)


def _read(source: BinaryIO, sniffed: Sniffed, sha256: str, size: int, original_filename: str | None) -> Analysis:
    notes: list[str] = []
    try:
        audio = sniffed.mutagen_class(source)
    except Exception as exc:  # noqa: BLE001 - any parser failure means the file is not usable audio
        raise InvalidFormat(
            f"the {sniffed.format.upper()} data is corrupt or truncated: {_reason(exc)}",
            details={"format": sniffed.format},
        ) from None
    info = _audio_info(audio, sniffed, size, source)
    found_tags, picture = _tags_and_picture(audio, source, sniffed)
    artwork = ArtworkInfo()
    thumbnail: bytes | None = None
    if picture:
        artwork, thumbnail, note = make_thumbnail(picture)
        if note:
            notes.append(note)
    if original_filename:
        suffix = Path(original_filename).suffix.lower().lstrip(".")
        if suffix and suffix not in _EQUIVALENT_SUFFIXES.get(sniffed.format, {sniffed.format}):
            notes.append(f"the file is named .{suffix} but holds {sniffed.format} audio")
    return Analysis(
        sha256=sha256,
        size_bytes=size,
        extension=sniffed.format,
        audio=info,
        tags=found_tags,
        artwork=artwork,
        thumbnail=thumbnail,
        warnings=notes,
    )


_EQUIVALENT_SUFFIXES = {
    "m4a": {"m4a", "mp4", "m4b", "m4p", "aac", "alac"},
    "ogg": {"ogg", "oga"},
    "oga": {"oga", "ogg"},
    "opus": {"opus", "ogg", "oga"},
    "spx": {"spx", "ogg", "oga"},
    "aiff": {"aiff", "aif", "aifc"},
    "wav": {"wav", "wave"},
    "mp3": {"mp3", "mpga", "mp2"},
    "wma": {"wma", "asf"},
}


def _reason(exc: Exception) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text[:200]


def _audio_info(audio: FileType, sniffed: Sniffed, size: int, source: BinaryIO) -> AudioInfo:
    info: Any = audio.info
    length = float(getattr(info, "length", 0) or 0)
    if not length > 0:
        raise InvalidFormat(f"the {sniffed.format.upper()} file holds no audio (zero duration)")
    codec = sniffed.codec or _codec(audio, sniffed, source)
    bitrate = int(getattr(info, "bitrate", 0) or 0) or int(size * 8 / length)
    bits = getattr(info, "bits_per_sample", None) or None
    if codec in LOSSY_CODECS:
        bits = None
    return AudioInfo(
        mime_type=sniffed.mime_type,
        format=sniffed.format,
        codec=codec,
        duration_s=round(length, 6),
        channels=getattr(info, "channels", None) or None,
        # Opus always decodes at 48 kHz (mutagen reports no rate for it).
        sample_rate_hz=int(getattr(info, "sample_rate", 0) or 0) or (48000 if codec == "opus" else None),
        bitrate_bps=bitrate,
        bit_depth=int(bits) if bits else None,
    )


_WAVE_CODECS = {3: "pcm_f{bits}le", 6: "pcm_alaw", 7: "pcm_mulaw", 0x55: "mp3", 2: "adpcm_ms", 0x11: "adpcm_ima_wav"}


_AIFC_CODECS = {
    b"NONE": "pcm_s{bits}be", b"twos": "pcm_s{bits}be", b"sowt": "pcm_s{bits}le", b"fl32": "pcm_f32be",
    b"FL32": "pcm_f32be", b"fl64": "pcm_f64be", b"FL64": "pcm_f64be", b"ulaw": "pcm_mulaw",
    b"ULAW": "pcm_mulaw", b"alaw": "pcm_alaw", b"ALAW": "pcm_alaw", b"ima4": "adpcm_ima_qt",
}


def _aifc_codec(source: BinaryIO, bits: int) -> str:
    """AIFF is big-endian PCM; AIFC names its encoding in the COMM chunk (mutagen does not say)."""
    source.seek(0)
    header = source.read(12)
    if header[8:12] != b"AIFC":
        return f"pcm_s{bits}be"
    for _ in range(64):
        chunk = source.read(8)
        if len(chunk) < 8:
            break
        size = int.from_bytes(chunk[4:8], "big")
        if chunk[:4] == b"COMM":
            body = source.read(min(size, 64))
            kind = body[18:22]
            return _AIFC_CODECS.get(kind, kind.decode("latin-1").strip().lower() or "aifc").format(bits=bits)
        source.seek(size + (size & 1), 1)
    return "aifc"


def _codec(audio: FileType, sniffed: Sniffed, source: BinaryIO) -> str:
    info: Any = audio.info
    if isinstance(audio, MP4):
        raw = (info.codec or "").lower()
        if not raw:
            raise InvalidFormat("the MP4 file has no audio track")
        if raw.startswith("mp4a.40") or raw == "mp4a":
            return "aac"
        if raw in ("mp4a.69", "mp4a.6b"):
            return "mp3"
        return {"alac": "alac", "ac-3": "ac3", "ec-3": "eac3", "flac": "flac", "opus": "opus"}.get(raw, raw)
    if isinstance(audio, WAVE):
        bits = int(getattr(info, "bits_per_sample", 16) or 16)
        fmt = int(getattr(info, "audio_format", 1) or 1)
        if fmt in (1, 0xFFFE):
            return "pcm_u8" if bits == 8 else f"pcm_s{bits}le"
        return _WAVE_CODECS.get(fmt, f"wav_0x{fmt:04x}").format(bits=bits)
    if sniffed.format == "aiff":
        bits = int(getattr(info, "bits_per_sample", 16) or 16)
        return _aifc_codec(source, bits)
    if isinstance(audio, ASF):
        return "wma"
    return sniffed.format


def _tags_and_picture(audio: FileType, source: BinaryIO, sniffed: Sniffed) -> tuple[Tags, bytes | None]:
    found = audio.tags
    picture: bytes | None = None
    result = Tags()
    if isinstance(found, ID3):
        result = tagread.build_tags(tagread.id3_getter(found))
        picture = tagread.id3_picture(found)
    elif isinstance(found, MP4Tags):
        result = tagread.build_tags(tagread.mp4_getter(found))
        picture = tagread.mp4_picture(found)
    elif isinstance(found, APEv2):
        result = tagread.build_tags(tagread.ape_getter(found))
        picture = tagread.ape_picture(found)
    elif isinstance(found, ASFTags):
        result = tagread.build_tags(tagread.asf_getter(found))
        picture = tagread.asf_picture(found)
    elif found is not None and hasattr(found, "vendor"):  # Vorbis comments
        result = tagread.build_tags(tagread.vorbis_getter(found))
        picture = tagread.vorbis_picture(audio)
    elif sniffed.format == "flac":
        picture = tagread.vorbis_picture(audio)  # pictures without a comment block
    if isinstance(audio, WAVE):
        info = tagread.read_riff_info(source)
        if info:
            result = tagread.merge_tags(result, tagread.build_tags(tagread.info_getter(info)))
    return result, picture


def make_thumbnail(data: bytes) -> tuple[ArtworkInfo, bytes | None, str | None]:
    """Size the embedded picture and make a JPEG of at most 600x600.

    A broken picture or one over Pillow's pixel limit (a decompression bomb) is ignored with a
    warning: bad artwork never fails an ingest.
    """
    try:
        # No warnings.catch_warnings() here: it changes process-global state and this runs in
        # threads. Pillow itself refuses images over 2x MAX_IMAGE_PIXELS; we refuse those over 1x.
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and width * height > limit:
                raise Image.DecompressionBombError(f"{width}x{height} pixels")
            if image.format == "JPEG":
                image.draft("RGB", THUMBNAIL_MAX)  # decode at a reduced scale: much faster
            image.thumbnail(THUMBNAIL_MAX)
            if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
            else:
                flat = image.convert("RGB")
            out = io.BytesIO()
            flat.save(out, "JPEG", quality=85)
    except Image.DecompressionBombError:
        return ArtworkInfo(), None, "embedded artwork ignored: the image is too large (decompression bomb guard)"
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for broken images
        return ArtworkInfo(), None, f"embedded artwork ignored: the image cannot be read ({exc.__class__.__name__})"
    return ArtworkInfo(present=True, width=width, height=height), out.getvalue(), None


def analyze_batch(items: list[tuple[str, bool]]) -> list[Analysis | LoistError | None]:
    """Analyse several files in one call: the unit of work of the bulk-ingest process pool.

    ``items`` are ``(path, named)``; a file that was not named by the caller (met while walking a
    folder) and does not look like audio gives ``None`` (skipped). Errors are returned, not raised,
    so one bad file does not lose the batch and each crosses the process boundary with its code.
    Lives in the engine, not the service, so a worker process imports only what analysis needs.
    """
    from loist.ingest.sources import looks_like_audio

    results: list[Analysis | LoistError | None] = []
    for raw, named in items:
        path = Path(raw)
        try:
            if not path.is_file():
                raise NotFound(f"no such file: {raw}")
            if not named and not looks_like_audio(path):
                results.append(None)
                continue
            results.append(analyze(path, original_filename=path.name))
        except LoistError as exc:
            results.append(exc)
    return results
