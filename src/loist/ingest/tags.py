"""Read descriptive tags and the embedded cover from whatever tag format a file carries.

Each tag family (ID3, Vorbis comments, MP4 atoms, APEv2, ASF, RIFF INFO) is reduced to one
``getter(field) -> list[str]`` over the same field names as :class:`loist.model.Tags`, and one
function turns those strings into a ``Tags``: text cleaned, genres split and de-duplicated, years
and track numbers parsed. So every format is interpreted by the same rules.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
from collections.abc import Callable, Iterable
from typing import Any, BinaryIO

from mutagen.apev2 import APEv2
from mutagen.asf import ASFTags
from mutagen.flac import FLAC, Picture
from mutagen.id3 import ID3
from mutagen.mp4 import MP4Tags

from loist.model import Tags

Getter = Callable[[str], list[str]]

_YEAR = re.compile(r"(?<!\d)(\d{4})(?!\d)")
_LEADING_INT = re.compile(r"^\s*0*(\d{1,4})")


def clean_text(value: Any) -> str | None:
    """Text without NULs and surrounding whitespace; empty means absent."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    text = str(value).replace("\x00", " ").strip()
    return text or None


def parse_year(value: str | None) -> int | None:
    """The year of "2019", "2019-05-01", "01/05/2019", "2019-05-01T10:00"."""
    if not value:
        return None
    match = _YEAR.search(value)
    if match is None:
        return None
    year = int(match.group(1))
    return year if 1000 <= year <= 2999 else None


def parse_number(value: str | None) -> int | None:
    """The leading number of "3", "03", "3/12"."""
    if not value:
        return None
    match = _LEADING_INT.match(value)
    if match is None:
        return None
    number = int(match.group(1))
    return number if number > 0 else None


def split_genres(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        for part in re.split(r"[;\x00]", value):
            text = clean_text(part)
            if text and text.casefold() not in seen:
                seen.add(text.casefold())
                out.append(text)
    return out


def split_names(values: Iterable[str]) -> list[str]:
    """Every name of a multi-valued tag (ID3v2.4 lists, repeated Vorbis fields, MP4 lists), cleaned
    and de-duplicated. A value is never split on "&", "/" or "," ("Simon & Garfunkel", "AC/DC")."""
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        for part in value.split("\x00"):
            text = clean_text(part)
            if text and text.casefold() not in seen:
                seen.add(text.casefold())
                out.append(text)
    return out


def build_tags(get: Getter) -> Tags:
    def first(field: str) -> str | None:
        for value in get(field):
            text = clean_text(value)
            if text:
                return text
        return None

    return Tags(
        title=first("title"),
        # A separate list of the names (Picard's ARTISTS) wins over the display string's values.
        artists=split_names(get("artists")) or split_names(get("artist")),
        album=first("album"),
        album_artists=split_names(get("album_artist")),
        genres=split_genres(get("genre")),
        year=parse_year(first("year")),
        track_number=parse_number(first("track_number")),
        disc_number=parse_number(first("disc_number")),
        composers=split_names(get("composer")),
        label=first("label"),
        isrc=(first("isrc") or "").replace("-", "").upper() or None,
        comment=first("comment"),
    )


def merge_tags(primary: Tags, fallback: Tags) -> Tags:
    """Fill the gaps of ``primary`` from ``fallback`` (e.g. ID3 in a WAV over its INFO chunk)."""
    data = primary.model_dump()
    for key, value in fallback.model_dump().items():
        if data[key] in (None, []):
            data[key] = value
    return Tags(**data)


# --- ID3 --------------------------------------------------------------------------------------

_ID3_FRAMES = {
    "title": ("TIT2",),
    "artist": ("TPE1",),
    "album": ("TALB",),
    "album_artist": ("TPE2",),
    "year": ("TDRC", "TYER", "TDOR", "TORY"),
    "track_number": ("TRCK",),
    "disc_number": ("TPOS",),
    "composer": ("TCOM",),
    "label": ("TPUB",),
    "isrc": ("TSRC",),
}
_ID3_TXXX = {
    "label": ("LABEL", "PUBLISHER"),
    "isrc": ("ISRC",),
    "comment": ("COMMENT", "DESCRIPTION"),
    "artists": ("ARTISTS",),
}


def id3_getter(tags: ID3) -> Getter:
    by_id: dict[str, list[Any]] = {}
    for frame in tags.values():  # one pass: ID3.getall() rescans every key on each call
        by_id.setdefault(frame.FrameID, []).append(frame)

    def get(field: str) -> list[str]:
        out: list[str] = []
        if field == "genre":
            for frame in by_id.get("TCON", ()):
                out.extend(frame.genres)  # resolves ID3v1 numeric genres: "(17)" -> "Rock"
            return out
        if field == "comment":
            for frame in by_id.get("COMM", ()):
                if not frame.desc.startswith("iTun"):
                    out.extend(str(t) for t in frame.text)
        for frame_id in _ID3_FRAMES.get(field, ()):
            for frame in by_id.get(frame_id, ()):
                out.extend(str(t) for t in frame.text)
        wanted = _ID3_TXXX.get(field, ())
        if wanted:
            for frame in by_id.get("TXXX", ()):
                if frame.desc.upper() in wanted:
                    out.extend(str(t) for t in frame.text)
        return out

    return get


def id3_picture(tags: ID3) -> bytes | None:
    frames = tags.getall("APIC")
    if not frames:
        return None
    front = [f for f in frames if f.type == 3]
    return bytes((front or frames)[0].data)


# --- Vorbis comments (FLAC, Ogg Vorbis / Opus / FLAC / Speex) ---------------------------------

_VORBIS_KEYS = {
    "title": ("title",),
    "artist": ("artist",),
    "artists": ("artists",),
    "album": ("album",),
    "album_artist": ("albumartist", "album artist", "album_artist"),
    "genre": ("genre",),
    "year": ("date", "year", "originaldate"),
    "track_number": ("tracknumber", "track"),
    "disc_number": ("discnumber", "disc"),
    "composer": ("composer",),
    "label": ("label", "organization", "publisher"),
    "isrc": ("isrc",),
    "comment": ("comment", "description"),
}


def vorbis_getter(tags: Any) -> Getter:
    def get(field: str) -> list[str]:
        for key in _VORBIS_KEYS.get(field, ()):  # the first key present (the others are its aliases)
            if key in tags and tags[key]:
                return list(tags[key])
        return []

    return get


def vorbis_picture(audio: Any) -> bytes | None:
    if isinstance(audio, FLAC) and audio.pictures:
        front = [p for p in audio.pictures if p.type == 3]
        return bytes((front or audio.pictures)[0].data)
    tags = audio.tags
    if tags is None:
        return None
    pictures: list[Picture] = []
    for value in tags.get("metadata_block_picture", []):
        picture = _decode_picture(value)
        if picture is not None:
            pictures.append(picture)
    if pictures:
        front = [p for p in pictures if p.type == 3]
        return bytes((front or pictures)[0].data)
    for value in tags.get("coverart", []):  # the legacy, pre-standard form
        try:
            return base64.b64decode(value)
        except (binascii.Error, ValueError):
            continue
    return None


def _decode_picture(value: str) -> Picture | None:
    """A METADATA_BLOCK_PICTURE value, or None when it is malformed (it is then ignored)."""
    try:
        return Picture(base64.b64decode(value))
    except Exception:  # noqa: BLE001 - mutagen raises several types for a malformed block
        return None


# --- MP4 ----------------------------------------------------------------------------------------

_MP4_KEYS = {
    "title": ("\xa9nam",),
    "artist": ("\xa9ART",),
    "artists": ("----:com.apple.iTunes:ARTISTS",),
    "album": ("\xa9alb",),
    "album_artist": ("aART",),
    "genre": ("\xa9gen",),
    "year": ("\xa9day",),
    "composer": ("\xa9wrt",),
    "comment": ("\xa9cmt", "desc"),
    "label": ("----:com.apple.iTunes:LABEL", "----:com.apple.iTunes:PUBLISHER", "----:com.apple.iTunes:publisher"),
    "isrc": ("----:com.apple.iTunes:ISRC",),
}


def mp4_getter(tags: MP4Tags) -> Getter:
    # mutagen already turns the numeric "gnre" atom into "\xa9gen" text when it reads the file.
    def get(field: str) -> list[str]:
        out: list[str] = []
        if field in ("track_number", "disc_number"):
            for pair in tags.get("trkn" if field == "track_number" else "disk", []):
                if pair and pair[0]:
                    out.append(str(pair[0]))
            return out
        for key in _MP4_KEYS.get(field, ()):
            for value in tags.get(key, []):
                out.append(bytes(value).decode("utf-8", "replace") if isinstance(value, bytes) else str(value))
        return out

    return get


def mp4_picture(tags: MP4Tags) -> bytes | None:
    covers = tags.get("covr", [])
    return bytes(covers[0]) if covers else None


# --- APEv2 (Monkey's Audio, WavPack, Musepack, OptimFROG, TAK, sometimes MP3) -----------------

_APE_KEYS = {
    "title": ("title",),
    "artist": ("artist",),
    "album": ("album",),
    "album_artist": ("album artist", "albumartist", "album_artist"),
    "genre": ("genre",),
    "year": ("year", "date"),
    "track_number": ("track", "tracknumber"),
    "disc_number": ("disc", "discnumber"),
    "composer": ("composer",),
    "label": ("label", "publisher"),
    "isrc": ("isrc",),
    "comment": ("comment",),
}


def ape_getter(tags: APEv2) -> Getter:
    def get(field: str) -> list[str]:
        out: list[str] = []
        for key in _APE_KEYS.get(field, ()):
            if key in tags:  # APEv2 keys are case-insensitive
                value = tags[key]
                if getattr(value, "kind", 0) == 0:  # text
                    out.extend(str(value).split("\x00"))
        return out

    return get


def ape_picture(tags: APEv2) -> bytes | None:
    for key in ("Cover Art (Front)", "Cover Art (Other)"):
        if key in tags:
            value = bytes(tags[key].value)
            return value.split(b"\x00", 1)[1] if b"\x00" in value else value
    return None


# --- ASF (WMA) ------------------------------------------------------------------------------------

_ASF_KEYS = {
    "title": ("Title", "title"),
    "artist": ("Author", "WM/AlbumArtist"),
    "album": ("WM/AlbumTitle",),
    "album_artist": ("WM/AlbumArtist",),
    "genre": ("WM/Genre",),
    "year": ("WM/Year", "date", "WM/OriginalReleaseYear"),
    "track_number": ("WM/TrackNumber",),
    "disc_number": ("WM/PartOfSet",),
    "composer": ("WM/Composer",),
    "label": ("WM/Publisher",),
    "isrc": ("WM/ISRC", "ISRC"),
    "comment": ("Description",),
}


def asf_getter(tags: ASFTags) -> Getter:
    def get(field: str) -> list[str]:
        for key in _ASF_KEYS.get(field, ()):  # the first key present (WM/AlbumArtist: artist's fallback)
            values = [str(v) for v in tags.get(key, [])]
            if values:
                return values
        return []

    return get


def asf_picture(tags: ASFTags) -> bytes | None:
    """The first WM/Picture (front cover preferred): type, length, UTF-16 mime and description, data."""
    found: list[tuple[int, bytes]] = []
    for value in tags.get("WM/Picture", []):
        raw = bytes(getattr(value, "value", b""))
        if len(raw) < 9:
            continue
        kind, length = raw[0], struct.unpack("<I", raw[1:5])[0]
        pos = 5
        for _ in range(2):  # skip the two NUL-terminated UTF-16LE strings
            while pos + 1 < len(raw) and raw[pos : pos + 2] != b"\x00\x00":
                pos += 2
            pos += 2
        data = raw[pos : pos + length]
        if data:
            found.append((kind, data))
    if not found:
        return None
    front = [data for kind, data in found if kind == 3]
    return (front or [found[0][1]])[0]


# --- RIFF INFO (WAV) ----------------------------------------------------------------------------

_INFO_KEYS = {
    "title": ("INAM",),
    "artist": ("IART",),
    "album": ("IPRD",),
    "genre": ("IGNR",),
    "year": ("ICRD",),
    "track_number": ("ITRK", "IPRT"),
    "composer": ("IMUS", "ICMS"),
    "label": ("IPUB",),
    "comment": ("ICMT", "ISBJ"),
}


def read_riff_info(fileobj: BinaryIO) -> dict[str, str]:
    """The LIST/INFO chunk of a RIFF/WAVE file (mutagen reads only the ID3 chunk of WAV)."""
    fileobj.seek(0, 2)
    end = fileobj.tell()
    fileobj.seek(12)
    found: dict[str, str] = {}
    for _ in range(4096):  # bounded: a crafted file cannot loop forever
        header = fileobj.read(8)
        if len(header) < 8:
            break
        chunk_id, size = header[:4], struct.unpack("<I", header[4:8])[0]
        start = fileobj.tell()
        if chunk_id == b"LIST" and size >= 4 and start + size <= end and size <= 1 << 20:
            body = fileobj.read(size)
            if body[:4] == b"INFO":
                found.update(_parse_info(body[4:]))
        fileobj.seek(start + size + (size & 1))
        if fileobj.tell() >= end:
            break
    return found


def _parse_info(body: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos + 8 <= len(body):
        key = body[pos : pos + 4].decode("latin-1")
        size = struct.unpack("<I", body[pos + 4 : pos + 8])[0]
        raw = body[pos + 8 : pos + 8 + size].split(b"\x00", 1)[0]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        out.setdefault(key, text)
        pos += 8 + size + (size & 1)
    return out


def info_getter(info: dict[str, str]) -> Getter:
    def get(field: str) -> list[str]:
        return [info[key] for key in _INFO_KEYS.get(field, ()) if key in info]

    return get
