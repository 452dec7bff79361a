"""The synthetic track generator (``loist seed --synthetic``, benchmarks, staging)."""

from __future__ import annotations

import array
import io
import itertools
import re
import unicodedata
import wave
from pathlib import Path

from loist.catalog import Catalog
from loist.catalog.search.tuning import COUNT_LIMIT
from loist.library.synthetic import generate_tracks, synthetic_blob, wav_bytes, write_wav
from loist.model import SearchRequest, Track, TrackStatus

N = 5000


def _tags(tracks: list[Track]) -> list[dict]:
    return [track.tags.model_dump() | {"d": track.audio.duration_s, "f": track.audio.format} for track in tracks]


def test_same_seed_same_tags_other_seed_other_tags() -> None:
    first = list(generate_tracks(300, seed=7))
    again = list(generate_tracks(300, seed=7))
    other = list(generate_tracks(300, seed=8))
    assert _tags(first) == _tags(again)
    assert _tags(first) != _tags(other)
    assert len({track.id for track in first + again}) == 600  # fresh ids: a library can be seeded twice


def test_tracks_are_valid_completed_and_share_one_blob() -> None:
    tracks = list(generate_tracks(N, blob_key="synthetic/x.mp3", blob_size=2048))
    for track in tracks[:500]:
        assert Track.model_validate(track.model_dump()) == track  # what was built is a valid Track
    assert {track.status for track in tracks} == {TrackStatus.COMPLETED}
    assert {track.sha256 for track in tracks} == {None}
    assert {track.blob_key for track in tracks} == {"synthetic/x.mp3"}
    assert {track.size_bytes for track in tracks} == {2048}
    created = [track.created_at for track in tracks]
    assert created == sorted(created)


def test_metadata_is_varied_like_a_real_library() -> None:
    tracks = list(generate_tracks(N))
    years = [t.tags.year for t in tracks if t.tags.year is not None]
    durations = [t.audio.duration_s or 0 for t in tracks]
    assert min(years) >= 1950 and max(years) <= 2025 and max(years) - min(years) > 50
    assert min(durations) >= 30 and max(durations) <= 1200
    assert min(durations) < 90 and max(durations) > 600
    assert len({t.audio.format for t in tracks}) >= 6
    assert sum(len(t.tags.genres) > 1 for t in tracks) > N // 10
    artists_by_genre: dict[str, set[str]] = {}
    for t in tracks:
        artists_by_genre.setdefault(t.tags.genres[0], set()).add(t.tags.artist or "")
    assert min(len(names) for names in artists_by_genre.values()) > 20

    text = " ".join(f"{t.tags.title} {t.tags.artist} {t.tags.album}" for t in tracks)
    assert any(unicodedata.combining(ch) for ch in unicodedata.normalize("NFD", text))  # accents
    for script in (r"[\u3040-\u30ff]", r"[\u4e00-\u9fff]", r"[\uac00-\ud7af]", r"[\u0400-\u04ff]", r"[\u0600-\u06ff]"):
        assert re.search(script, text), script
    assert "AC/DC" in text and "R.E.M." in text
    assert max(len(t.tags.title or "") for t in tracks) > 80


async def test_seeded_tracks_are_searchable(catalog: Catalog) -> None:
    generator = generate_tracks(3000, seed=3)
    while batch := list(itertools.islice(generator, 1000)):
        await catalog.add_many(batch)
    everything = await catalog.search(SearchRequest(query="", facets=True))
    # 3000 tracks: beyond the counting bound (1,000), so the total says "at least 1,000".
    assert (everything.total, everything.total_relation) == (min(3000, COUNT_LIMIT), "gte")
    assert everything.facets is not None and len(everything.facets["genre"]) > 20
    acdc = await catalog.search(SearchRequest(query="acdc", limit=100))
    assert acdc.total > 0
    assert all("AC/DC" in " ".join(filter(None, [h.track.tags.artist, h.track.tags.title, h.track.tags.album,
                                                h.track.tags.album_artist])) for h in acdc.items)


# --- the one WAV maker ----------------------------------------------------------------------------


def test_synthetic_blob_is_one_second_of_8bit_silence() -> None:
    data = synthetic_blob()
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate(), wav.getnframes()) == (1, 1, 8000, 8000)
        assert set(wav.readframes(8000)) == {0x80}  # unsigned 8-bit silence
    assert data == synthetic_blob()  # one blob shared by every synthetic track: the same bytes always


def test_marked_silence_is_long_deterministic_and_differs_by_marker(tmp_path: Path) -> None:
    """Longer than one write block; the marker chunk follows the audio and the RIFF size counts it."""
    seconds, rate = 3.5, 44100  # 154,350 frames: three blocks of at most 65,536
    paths = {}
    for name, marker in (("a", "track-a"), ("a-again", "track-a"), ("b", "track-b")):
        paths[name] = tmp_path / f"{name}.wav"
        with paths[name].open("wb") as handle:
            write_wav(handle, seconds, rate=rate, channels=2, sample_width=2, marker=marker)
    data = paths["a"].read_bytes()
    assert data == paths["a-again"].read_bytes() and data != paths["b"].read_bytes()
    assert int.from_bytes(data[4:8], "little") == len(data) - 8
    assert data[-72:-68] == b"loiS" and data[-64:].rstrip(b"\0") == b"track-a"
    with wave.open(str(paths["a"])) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, rate)
        assert wav.getnframes() == int(seconds * rate)
        assert set(wav.readframes(wav.getnframes())) == {0}


def test_noise_is_quiet_and_new_every_time() -> None:
    first, second = wav_bytes(1.0, sample_width=2, noise=True), wav_bytes(1.0, sample_width=2, noise=True)
    assert first != second
    with wave.open(io.BytesIO(first)) as wav:
        samples = array.array("h", wav.readframes(wav.getnframes()))
    assert len(samples) == 8000 and -512 <= min(samples) < max(samples) <= 511
