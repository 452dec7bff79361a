"""Synthetic tracks: realistic, varied, metadata-only catalogue rows for benchmarks and staging.

``loist seed --synthetic N`` and ``bench/search.py`` use :func:`generate_tracks`. The tags exercise
everything search must handle: accents (``Sigur Rós``), punctuation (``AC/DC``, ``R.E.M.``),
Japanese, Chinese, Korean, Cyrillic and Arabic text, long titles with ``(feat. ...)`` and
``[Remastered]`` suffixes, many artists per genre, years 1950-2025, durations from 30 s to 20 min,
several genres per track and the usual formats. Every track is COMPLETED, has no sha256 (content
is not real) and points at one shared small blob, so a million of them cost no storage.

Deterministic: the same ``seed`` gives the same tags in the same order (ids are fresh UUIDs, so a
library can be seeded twice). Fast: plain ``random.Random`` choices, no I/O.

This is also the one place that makes WAV files (:func:`write_wav`, :func:`wav_bytes`): the shared
silent blob of synthetic tracks (:data:`SYNTHETIC_BLOB_KEY`), the silence ``loist import``
regenerates when it cannot encode a format, and the noise ``loist smoke`` ingests.
"""

from __future__ import annotations

import bisect
import io
import itertools
import math
import os
import random
import uuid
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, TypeVar

from pydantic import BaseModel

from loist.model import ArtworkInfo, AudioInfo, Source, Tags, Track, TrackStatus

WORDS = (
    "love night heart fire rain summer dream light dark blue red gold silver river ocean city road "
    "home time world star moon sun sky wind storm shadow ghost angel devil paradise heaven hell "
    "highway train station island mountain desert forest garden winter spring autumn morning "
    "midnight evening dance party song story girl boy baby lady man king queen child friend lover "
    "stranger soldier sailor runner dreamer wild free lost broken golden electric cosmic velvet "
    "crystal neon secret silent lonely happy crazy sweet bitter young old new last first little big "
    "high low deep long slow fast cold warm hot bright holy sacred simple strange beautiful "
    "memory echo signal machine engine radio telephone mirror window door wall bridge tower "
    "castle church garden market street avenue boulevard harbour lighthouse valley canyon glacier "
    "thunder lightning hurricane tornado earthquake volcano avalanche waterfall rainbow horizon "
    "journey voyage escape return revolution rebellion freedom liberty glory victory destiny "
    "fortune mystery miracle wonder magic spirit soul mind body blood bone skin tears smile kiss "
    "goodbye hello tomorrow yesterday forever never always sometimes maybe nothing everything "
    "alone together apart again away back down up over under inside outside between beyond "
    "running falling flying burning crying singing dancing waiting walking talking dreaming "
    "chasing breaking shining fading rising calling coming going"
).split()
NAMES_FIRST = (
    "John Paul George Ringo Mick Keith David Joni Aretha Nina Billie Ella Miles Chet Herbie Björk "
    "Sinéad Zoë Ólafur Chloé François Françoise Sébastien José María Lucía Søren Ångström Jürgen "
    "Anaïs Renée Noël Thaïs Ewa Zbigniew Dvořák Łukasz Jiří Małgorzata Ana Luís João Inês Ahmed "
    "Fatima Omar Layla Yuki Hiro Min-jun Seo-yeon Wei Mei Ivan Olga Dmitri Natasha Kwame Amara"
).split()
NAMES_LAST = (
    "Smith Jones Mitchell Franklin Simone Holiday Fitzgerald Davis Baker Hancock Guðmundsdóttir "
    "O'Connor Keating Arnalds Müller Schäfer Lefèvre Gonçalves Núñez Peña Kowalski Dvořák Novák "
    "Søndergaard Åkesson Yılmaz Öztürk Tanaka Suzuki Kim Park Chen Wang Petrov Ivanova Okafor Mensah "
    "Hernández García Rodríguez d'Arcy van der Berg De La Soul MacLeod"
).split()
SPECIAL_ARTISTS = [
    "AC/DC", "R.E.M.", "Sigur Rós", "Beyoncé", "Motörhead", "Mötley Crüe", "Björk", "Guns N' Roses",
    "Jay-Z", "P!nk", "Ke$ha", "M83", "blink-182", "Sinéad O'Connor", "Ólafur Arnalds", "Röyksopp",
    "Mø", "Café Tacvba", "Françoise Hardy", "Sébastien Tellier", "Hüsker Dü", "Queensrÿche",
    "Boney M.", "N.W.A", "Crosby, Stills, Nash & Young", "Earth, Wind & Fire", "Simon & Garfunkel",
    "!!!", "The The", "Sunn O)))", "múm", "Tiësto", "Amadou & Mariam", "Salif Keïta",
    "東京事変", "宇多田ヒカル", "坂本龍一", "椎名林檎", "久石譲", "周杰倫", "王菲", "邓丽君",
    "방탄소년단", "아이유", "빅뱅", "서태지와 아이들", "Кино", "Ария", "Земфира", "Сплин", "ДДТ",
    "Пётр Чайковский", "فيروز", "أم كلثوم", "عمرو دياب", "محمد عبد الوهاب", "Νίκος Ξυλούρης",
]
CJK_TITLES = [
    "東京タワー", "夜に駆ける", "千と千尋の神隠し", "さくらさくら", "月光", "花火", "青い春", "雨の日",
    "北京欢迎你", "月亮代表我的心", "甜蜜蜜", "青花瓷", "夜曲", "봄날", "좋은 날", "밤편지", "사랑해",
    "너의 의미", "Звезда по имени Солнце", "Группа крови", "Кукушка", "Белая ночь", "Осень",
    "كيفك إنت", "إنت عمري", "سألوني الناس", "يا حبيبي", "Σ' αγαπώ",
]
GENRES = [
    "Rock", "Pop", "Jazz", "Blues", "Classical", "Electronic", "Hip-Hop", "R&B", "Soul", "Funk",
    "Country", "Folk", "Reggae", "Metal", "Punk", "Indie", "Alternative", "Ambient", "Techno", "House",
    "Post-Rock", "Shoegaze", "K-Pop", "J-Pop", "Chanson", "Bossa Nova", "Flamenco", "Afrobeat",
    "Latin", "Soundtrack", "Gospel", "Disco", "Drum & Bass", "Trip-Hop", "Grunge", "Hard Rock",
    "Singer-Songwriter", "World", "Arabic Classical", "Experimental",
]
LABELS = [
    "Blue Note", "Motown", "Sub Pop", "Warp", "4AD", "XL Recordings", "Rough Trade", "Def Jam",
    "Deutsche Grammophon", "ECM", "Matador", "Domino", "Ninja Tune", "Stax", "Atlantic", "Island",
    "Columbia", "EMI", "Virgin", "Sony Music Japan", "SM Entertainment", "Мелодия", "Rotana",
    "Nonesuch", "Hyperdub", "Kranky", "Mute", "Factory", "Creation", "Elektra",
]
COMPOSERS = [
    "Johann Sebastian Bach", "Wolfgang Amadeus Mozart", "Ludwig van Beethoven", "Antonín Dvořák",
    "Frédéric Chopin", "Claude Debussy", "Erik Satie", "Пётр Чайковский", "Сергей Рахманинов",
    "Béla Bartók", "Arvo Pärt", "Philip Glass", "Steve Reich", "久石譲", "坂本龍一", "Ennio Morricone",
    "Hans Zimmer", "John Williams", "Lennon–McCartney", "Jagger/Richards",
]
# format, codec, mime type, weight
FORMATS = [
    ("mp3", "mp3", "audio/mpeg", 50), ("flac", "flac", "audio/flac", 20), ("m4a", "aac", "audio/mp4", 12),
    ("ogg", "vorbis", "audio/ogg", 6), ("opus", "opus", "audio/ogg", 5), ("wav", "pcm_s16le", "audio/wav", 4),
    ("aiff", "pcm_s16be", "audio/aiff", 3),
]
SUFFIXES = [
    " (Remastered)", " (Live)", " - Radio Edit", " (Acoustic Version)", " [Remastered 2011]",
    " (Demo)", " (Extended Mix)", " - Live at Wembley Stadium, London, 1986", " (Instrumental)",
]
ARTISTS_PER_GENRE = 400
SYNTHETIC_BLOB_KEY = "audio/synthetic/silence.wav"  # the one blob every synthetic track points at
WAV_BLOCK_FRAMES = 65536  # frames written at a time: long files need little memory
MARKER_CHUNK = b"loiS"  # a private RIFF chunk (readers skip it) that carries a marker text
# Rows per seeding transaction. On SQLite a transaction holds the file's one write lock: 200 rows
# hold it ~0.1 s (search-index triggers included), so a tag edit from a server beside `loist seed`
# waits about that long, not the 2 s of the 5,000-row transactions this once used. Measured, 10,000
# rows: 200 per transaction 1,367 tracks/s, 500 1,603/s, 1,000 1,646/s, 100 726/s (docs/benchmarks.md).
SEED_BATCH = 200

M = TypeVar("M", bound=BaseModel)


def _construct(cls: type[M], /, **values: Any) -> M:
    """``cls.model_construct(**values)`` for values that are complete and valid, without its per-field
    bookkeeping (a third of the generator's time). Every field must be given."""
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def _title(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.06:
        return rng.choice(CJK_TITLES)
    words = WORDS
    if roll < 0.35:
        text = f"{rng.choice(words).title()} {rng.choice(words).title()}"
    elif roll < 0.55:
        text = f"The {rng.choice(words).title()} of {rng.choice(words).title()}"
    elif roll < 0.70:
        text = rng.choice(words).title()
    elif roll < 0.85:
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 6))).capitalize()
    else:  # long titles
        text = " ".join(rng.choice(words) for _ in range(rng.randint(8, 16))).capitalize()
    if rng.random() < 0.12:
        text += rng.choice(SUFFIXES)
    if rng.random() < 0.05:
        text += f" (feat. {rng.choice(SPECIAL_ARTISTS)})"
    return text


def _artist_pool(rng: random.Random) -> dict[str, list[str]]:
    """Many artists per genre: band names and people, plus the awkward real-world spellings."""
    pool: dict[str, list[str]] = {}
    for genre in GENRES:
        names: list[str] = []
        for _ in range(ARTISTS_PER_GENRE):
            roll = rng.random()
            if roll < 0.45:
                names.append(f"{rng.choice(NAMES_FIRST)} {rng.choice(NAMES_LAST)}")
            elif roll < 0.75:
                names.append(f"The {rng.choice(WORDS).title()} {rng.choice(WORDS).title()}s")
            else:
                names.append(f"{rng.choice(WORDS).title()} {rng.choice(WORDS).title()}")
        names.extend(rng.sample(SPECIAL_ARTISTS, 6))
        pool[genre] = names
    return pool


def _duration(rng: random.Random) -> float:
    """Mostly 2-6 minutes, with a long tail up to 20 minutes and a few 30-second sketches."""
    value = math.exp(rng.gauss(math.log(230), 0.45))
    if rng.random() < 0.02:
        value = rng.uniform(30, 90)
    if rng.random() < 0.02:
        value = rng.uniform(600, 1200)
    return round(min(max(value, 30.0), 1200.0), 3)


def _audio(rng: random.Random, fmt: str, codec: str, mime: str) -> AudioInfo:
    """Technical properties that fit the format (lossless formats have a bit depth, no bitrate)."""
    lossless = fmt in ("flac", "wav", "aiff")
    return _construct(
        AudioInfo,
        mime_type=mime,
        format=fmt,
        codec=codec,
        duration_s=_duration(rng),
        channels=2,
        sample_rate_hz=rng.choice((44100, 48000, 96000)) if lossless else rng.choice((44100, 48000)),
        bitrate_bps=None if lossless else rng.choice((128000, 192000, 256000, 320000)),
        bit_depth=rng.choice((16, 24)) if lossless else None,
    )


def _tags(rng: random.Random, artist: str, album: str, genre: str, genres: list[str], year: int) -> Tags:
    """One track's tags, drawn in this order (the generator's output for a seed stays what it was)."""
    title = _title(rng)
    album_artist = artist if rng.random() < 0.9 else "Various Artists"
    kept_year = year if rng.random() > 0.03 else None
    track_number = rng.randint(1, 16)
    composer = rng.choice(COMPOSERS) if genre in ("Classical", "Soundtrack") or rng.random() < 0.05 else None
    label = rng.choice(LABELS) if rng.random() < 0.7 else None
    return _construct(
        Tags,
        title=title,
        artist=artist,
        artists=[artist],
        album=album,
        album_artist=album_artist,
        album_artists=[album_artist],
        genres=genres,
        year=kept_year,
        track_number=track_number,
        disc_number=1,
        composer=composer,
        composers=[composer] if composer else [],
        label=label,
        isrc=None,
        comment=None,
    )


def generate_tracks(
    n: int,
    *,
    seed: int = 0,
    blob_key: str = "synthetic/silence.mp3",
    blob_size: int = 1024,
    now: datetime | None = None,
    added_span: timedelta = timedelta(days=730),
) -> Iterator[Track]:
    """Yield ``n`` COMPLETED metadata-only tracks, the same tags for the same ``seed``.

    ``created_at`` runs from ``now - added_span`` (first track) to ``now`` (last), so ``added:``
    queries and newest-first listings see a realistic spread.
    """
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    artists = _artist_pool(rng)
    formats = [entry[:3] for entry in FORMATS]
    cumulative = list(itertools.accumulate(entry[3] for entry in FORMATS))
    # Shared by every track (nothing mutates them): a third fewer objects to build.
    source = Source.model_construct(type="synthetic", location=None, original_filename=None)
    artwork = ArtworkInfo.model_construct(present=False, width=None, height=None)
    end = now or datetime.now(UTC)
    start = end - added_span
    step = added_span / max(n, 1)
    albums: dict[str, list[str]] = {}
    for index in range(n):
        genre = rng.choice(GENRES)
        genres = [genre]
        if rng.random() < 0.3:
            genres.append(rng.choice(GENRES))
        artist = rng.choice(artists[genre])
        # Artists have a few albums each, so tracks share albums as in a real library.
        artist_albums = albums.setdefault(artist, [])
        if len(artist_albums) < 3 and (not artist_albums or rng.random() < 0.2):
            artist_albums.append(_title(rng))
        album = rng.choice(artist_albums)
        fmt, codec, mime = formats[bisect.bisect(cumulative, rng.random() * cumulative[-1])]
        created = start + step * index
        year = int(min(2025, max(1950, rng.gauss(1995, 18))))
        tags = _tags(rng, artist, album, genre, genres, year)
        audio = _audio(rng, fmt, codec, mime)
        yield _construct(
            Track,
            id=uuid.uuid4(),
            status=TrackStatus.COMPLETED,
            error_code=None,
            error_message=None,
            attempts=1,
            source=source,
            sha256=None,
            size_bytes=blob_size,
            audio=audio,
            tags=tags,
            artwork=artwork,
            blob_key=blob_key,
            thumbnail_key=None,
            created_at=created,
            updated_at=created,
        )


# --- WAV files ------------------------------------------------------------------------------------


def write_wav(
    target: BinaryIO,
    seconds: float,
    *,
    rate: int = 8000,
    channels: int = 1,
    sample_width: int = 1,
    noise: bool = False,
    marker: str | None = None,
) -> None:
    """Write a PCM WAV of silence into ``target`` (a seekable binary file), in blocks.

    ``noise``: quiet random samples instead, so every call makes new bytes (a new sha256).
    ``marker``: a trailing chunk holding this text (at most 64 bytes), so two silences of equal
    length differ while the same marker always gives the same bytes.
    """
    with wave.open(target, "wb") as out:  # wave leaves a file object it was given open
        out.setnchannels(channels)
        out.setsampwidth(sample_width)
        out.setframerate(rate)
        silence = b"" if noise else _samples(WAV_BLOCK_FRAMES * channels, sample_width, noise=False)
        remaining = int(seconds * rate)
        while remaining > 0:
            frames = min(remaining, WAV_BLOCK_FRAMES)
            size = frames * channels * sample_width
            out.writeframes(_samples(frames * channels, sample_width, noise=True) if noise else silence[:size])
            remaining -= frames
    if marker is not None:
        payload = marker.encode()[:64].ljust(64, b"\0")
        target.write(MARKER_CHUNK + len(payload).to_bytes(4, "little") + payload)
        end = target.tell()
        target.seek(4)  # the RIFF size now counts the marker chunk too
        target.write((end - 8).to_bytes(4, "little"))
        target.seek(end)


def wav_bytes(seconds: float, **options: Any) -> bytes:
    """:func:`write_wav` into memory (short files: the synthetic blob, the smoke check's noise)."""
    buf = io.BytesIO()
    write_wav(buf, seconds, **options)
    return buf.getvalue()


def synthetic_blob() -> bytes:
    """The content of :data:`SYNTHETIC_BLOB_KEY`: one second of 8 kHz mono 8-bit silence."""
    return wav_bytes(1.0)


def _samples(count: int, sample_width: int, *, noise: bool) -> bytes:
    """``count`` little-endian PCM samples: silence, or noise a few steps either side of it."""
    if not noise:
        return (b"\x80" if sample_width == 1 else bytes(sample_width)) * count
    data = bytearray(os.urandom(count * sample_width))
    centre = 0x80 if sample_width == 1 else 0
    for i in range(sample_width - 1, len(data), sample_width):  # the most significant byte: keep it quiet
        data[i] = (centre + data[i] % 4 - 2) & 0xFF
    return bytes(data)
