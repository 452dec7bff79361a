"""Recognise an audio format from its bytes, never from its name.

A file called ``song.mp3`` may be a PNG, a web page or nothing at all; ``mutagen.File`` guesses
with the file name as one of its scores. Here the first bytes decide, and the result names the one
mutagen class that must be able to read the file. Formats whose magic bytes are not distinctive
enough to trust (raw AAC without ADTS, MIDI) are not recognised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mutagen import FileType
from mutagen.aac import AAC
from mutagen.ac3 import AC3
from mutagen.aiff import AIFF
from mutagen.asf import ASF
from mutagen.dsdiff import DSDIFF
from mutagen.dsf import DSF
from mutagen.flac import FLAC
from mutagen.monkeysaudio import MonkeysAudio
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.musepack import Musepack
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.optimfrog import OptimFROG
from mutagen.tak import TAK
from mutagen.trueaudio import TrueAudio
from mutagen.wave import WAVE
from mutagen.wavpack import WavPack

from loist.errors import InvalidFormat

HEAD_BYTES = 64 * 1024  # enough for every check below except skipping a large ID3 tag

_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")


@dataclass(frozen=True)
class Sniffed:
    """A recognised format: ``format`` is also the canonical file extension."""

    format: str
    mime_type: str
    mutagen_class: type[FileType]
    codec: str | None = None  # when the container already tells (ogg: vorbis / opus / ...)


# --- MPEG audio frame headers ----------------------------------------------------------------

_MP3_BITRATES = {  # kbit/s by (version_is_1, layer)
    (True, 1): (0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def mpeg_frame_length(header: bytes) -> int | None:
    """Length in bytes of the MPEG audio frame starting with these 4 bytes, or None if invalid."""
    if len(header) < 4 or header[0] != 0xFF or header[1] & 0xE0 != 0xE0:
        return None
    version = (header[1] >> 3) & 3  # 3 = MPEG1, 2 = MPEG2, 0 = MPEG2.5, 1 = reserved
    layer_bits = (header[1] >> 1) & 3  # 3 = layer I, 2 = II, 1 = III, 0 = reserved
    bitrate_index = header[2] >> 4
    rate_index = (header[2] >> 2) & 3
    padding = (header[2] >> 1) & 1
    if version == 1 or layer_bits == 0 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    layer = 4 - layer_bits
    bitrate = _MP3_BITRATES[(version == 3, layer)][bitrate_index] * 1000
    rate = _MP3_RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    if layer == 3 and version != 3:
        return 72 * bitrate // rate + padding
    return 144 * bitrate // rate + padding


_TRAILERS = (b"TAG", b"APETAGEX", b"LYRICS", b"ID3")


def _frames_follow(buf: bytes, pos: int, length: int, remaining: int, needed: int) -> bool:
    """Do ``needed`` more valid frames (or the end of the data / a trailing tag) follow?"""
    nxt = pos
    for _ in range(needed):
        nxt += length
        if nxt > remaining:
            return False
        if nxt == remaining or nxt + 4 > len(buf):
            return True  # the end of the file, or past what was read: accept
        if buf.startswith(_TRAILERS, nxt):
            return True
        length = mpeg_frame_length(buf[nxt : nxt + 4]) or 0
        if not length:
            return False
    return True


def _find_mpeg_audio(buf: bytes, start: int, remaining: int) -> int | None:
    """Offset in ``buf`` of the first believable MPEG audio frame at or after ``start``.

    ``remaining`` is the number of bytes in the file from ``buf[0]`` on. A frame right at
    ``start`` must be followed by one more valid frame (or the end of the file, or a trailing tag);
    a frame found by scanning further on by two more, so random bytes are not taken for MP3.
    Raises InvalidFormat when the first frame is cut short by the end of the file.
    """
    limit = min(len(buf) - 4, start + 8192)
    pos = start
    while pos <= limit:
        pos = buf.find(b"\xff", pos, limit + 1)
        if pos < 0:
            return None
        length = mpeg_frame_length(buf[pos : pos + 4])
        if length:
            if pos == start and pos + length > remaining:
                raise InvalidFormat(
                    "the MP3 data is truncated: the first audio frame is cut short",
                    details={"format": "mp3", "reason": "truncated"},
                )
            if _frames_follow(buf, pos, length, remaining, 1 if pos == start else 2):
                return pos
        pos += 1
    return None


def _is_adts(buf: bytes, file_size: int) -> bool:
    if len(buf) < 7 or buf[0] != 0xFF or buf[1] & 0xF6 != 0xF0:
        return False
    length = ((buf[3] & 3) << 11) | (buf[4] << 3) | (buf[5] >> 5)
    if length < 7:
        return False
    if length >= file_size or length + 2 > len(buf):
        return length <= file_size
    return buf[length] == 0xFF and buf[length + 1] & 0xF6 == 0xF0


# --- containers ------------------------------------------------------------------------------


def _ogg(buf: bytes) -> Sniffed:
    if len(buf) < 28:
        raise InvalidFormat("the Ogg data is truncated", details={"format": "ogg", "reason": "truncated"})
    segments = buf[26]
    packet = buf[27 + segments : 27 + segments + 16]
    if packet.startswith(b"\x01vorbis"):
        return Sniffed("ogg", "audio/ogg", OggVorbis, "vorbis")
    if packet.startswith(b"OpusHead"):
        return Sniffed("opus", "audio/ogg", OggOpus, "opus")
    if packet.startswith(b"\x7fFLAC"):
        return Sniffed("oga", "audio/ogg", OggFLAC, "flac")
    if packet.startswith(b"Speex   "):
        return Sniffed("spx", "audio/ogg", OggSpeex, "speex")
    if packet.startswith(b"\x80theora"):
        raise InvalidFormat("this Ogg file holds video (Theora), not audio")
    raise InvalidFormat("the Ogg stream holds no audio codec that can be read")


def _id3v2_end(fileobj: BinaryIO, head: bytes, base: int) -> int:
    """Offset just past an ID3v2 tag starting at ``base``."""
    hdr = head[base : base + 10] if base + 10 <= len(head) else _read_at(fileobj, base, 10)
    if len(hdr) < 10 or any(b & 0x80 for b in hdr[6:10]):
        raise InvalidFormat("the ID3 tag is corrupt")
    size = (hdr[6] << 21) | (hdr[7] << 14) | (hdr[8] << 7) | hdr[9]
    footer = 10 if hdr[5] & 0x10 else 0
    return base + 10 + size + footer


def _read_at(fileobj: BinaryIO, offset: int, size: int) -> bytes:
    fileobj.seek(offset)
    return fileobj.read(size)


def _file_size(fileobj: BinaryIO) -> int:
    here = fileobj.tell()
    size = fileobj.seek(0, 2)
    fileobj.seek(here)
    return size


def _check_flac_blocks(fileobj: BinaryIO, start: int, file_size: int) -> None:
    """Walk the FLAC metadata blocks; the audio frames must start right after them."""
    pos = start + 4
    for _ in range(1024):
        hdr = _read_at(fileobj, pos, 4)
        if len(hdr) < 4:
            raise InvalidFormat(
                "the FLAC data is truncated inside its metadata", details={"format": "flac", "reason": "truncated"}
            )
        last = hdr[0] & 0x80
        pos += 4 + int.from_bytes(hdr[1:4], "big")
        if last:
            break
    sync = _read_at(fileobj, pos, 2)
    if pos > file_size or len(sync) < 2:
        raise InvalidFormat(
            "the FLAC file has no audio frames (truncated)", details={"format": "flac", "reason": "truncated"}
        )
    if sync[0] != 0xFF or sync[1] & 0xFE != 0xF8:
        raise InvalidFormat("the FLAC audio frames are corrupt", details={"format": "flac", "reason": "corrupt"})


def sniff_file(fileobj: BinaryIO, head: bytes | None = None) -> Sniffed:
    """Recognise the format of an open binary file (``head``: its first bytes, if already read)."""
    if head is None:
        head = _read_at(fileobj, 0, HEAD_BYTES)
    file_size = _file_size(fileobj)
    if file_size == 0:
        raise InvalidFormat("the file is empty")
    offset = 0
    buf = head
    for _ in range(8):  # skip stacked ID3v2 tags (some taggers write two)
        if not buf.startswith(b"ID3"):
            break
        offset = _id3v2_end(fileobj, head, offset)
        if offset >= file_size:
            raise InvalidFormat(
                "the file holds only an ID3 tag, no audio", details={"format": "mp3", "reason": "truncated"}
            )
        buf = head[offset:] if offset + 4096 <= len(head) else _read_at(fileobj, offset, HEAD_BYTES)
    after_id3 = offset > 0
    result = _by_magic(buf)
    if result is not None:
        if result.mutagen_class is FLAC:
            _check_flac_blocks(fileobj, offset, file_size)
        return result
    # Frame-synced streams; an ID3 tag may be followed by zero padding before the first frame.
    start = len(buf) - len(buf.lstrip(b"\x00")) if after_id3 else 0
    if _find_mpeg_audio(buf, start, file_size - offset) is not None:
        return Sniffed("mp3", "audio/mpeg", MP3, "mp3")
    if _is_adts(buf, file_size - offset):
        return Sniffed("aac", "audio/aac", AAC, "aac")
    raise InvalidFormat(_describe_unknown(head))


def _by_magic(buf: bytes) -> Sniffed | None:
    if buf.startswith(b"fLaC"):
        return Sniffed("flac", "audio/flac", FLAC, "flac")
    if buf.startswith(b"OggS"):
        return _ogg(buf)
    if buf[4:8] == b"ftyp":
        return Sniffed("m4a", "audio/mp4", MP4)
    if buf.startswith(b"RIFF") and buf[8:12] == b"WAVE":
        return Sniffed("wav", "audio/wav", WAVE)
    if (buf.startswith(b"RF64") and buf[8:12] == b"WAVE") or buf.startswith(b"riff\x2e\x91\xcf\x11"):
        raise InvalidFormat(
            "RF64 / Wave64 files are not supported; convert to WAV or FLAC",
            details={"format": "wav", "reason": "unsupported"},
        )
    if buf.startswith(b"FORM") and buf[8:12] in (b"AIFF", b"AIFC"):
        return Sniffed("aiff", "audio/aiff", AIFF)
    if buf.startswith(_ASF_GUID):
        return Sniffed("wma", "audio/x-ms-wma", ASF)
    if buf.startswith(b"MAC "):
        return Sniffed("ape", "audio/x-ape", MonkeysAudio, "ape")
    if buf.startswith(b"wvpk"):
        return Sniffed("wv", "audio/x-wavpack", WavPack, "wavpack")
    if buf.startswith((b"MPCK", b"MP+")):
        return Sniffed("mpc", "audio/x-musepack", Musepack, "musepack")
    if buf.startswith(b"TTA1"):
        return Sniffed("tta", "audio/x-tta", TrueAudio, "tta")
    if buf.startswith(b"DSD ") and buf[28:32] == b"fmt ":
        return Sniffed("dsf", "audio/x-dsf", DSF, "dsd")
    if buf.startswith(b"FRM8") and buf[12:16] == b"DSD ":
        return Sniffed("dff", "audio/x-dff", DSDIFF, "dsd")
    if buf.startswith(b"OFR "):
        return Sniffed("ofr", "audio/x-optimfrog", OptimFROG, "optimfrog")
    if buf.startswith(b"tBaK"):
        return Sniffed("tak", "audio/x-tak", TAK, "tak")
    if buf.startswith(b"\x0b\x77") and len(buf) >= 8:
        return Sniffed("ac3", "audio/ac3", AC3, "ac3")
    return None


_KNOWN_NON_AUDIO = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"<!DOCTYPE", "an HTML page"),
    (b"<html", "an HTML page"),
    (b"MThd", "a MIDI file (no recorded audio)"),
)


def _describe_unknown(head: bytes) -> str:
    for magic, name in _KNOWN_NON_AUDIO:
        if head[: len(magic)].lower() == magic.lower():
            return f"not an audio file: the content is {name}"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "not an audio file: the content is an AVI video"
    sample = head[:512]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return "not an audio file: the content is text"
    return "not a recognised audio format (the bytes match no supported audio format)"


def sniff(path: Path) -> Sniffed:
    """Recognise the format of the file at ``path`` (reads at most the first bytes and tag sizes)."""
    with Path(path).open("rb") as handle:
        return sniff_file(handle)
