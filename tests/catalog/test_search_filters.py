"""Structured filters (genre, year, duration, format) give the same answers whichever way they are
found: each search here is compared with the same search without the filters, filtered in Python
(the hits in the same order, the total, the facets, the cursors' pages). On SQLite a genre filter
with ranges or formats and no text finds its candidates in the genre's postings, and one term with
ranges or formats checks its postings before each match's row (``loist.catalog.search.walk``);
these tests pin that those paths answer exactly as the plain conditions do, on both engines.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loist.catalog import Catalog
from loist.catalog.query import parse_query
from loist.catalog.search import tuning, walk
from loist.catalog.search.builder import Builder
from loist.catalog.text import index_text, normalize_genre
from loist.model import AudioInfo, RangeFilter, SearchFilters, SearchRequest, Tags, Track
from tests.catalog.factories import make_track

NOW = datetime.now(UTC)

# Genre names whose keys and words differ in case, accents, spacing, punctuation and script; one
# without any word ("!!!": no postings, the plain path).
GENRES = ["Rock", "Hard Rock", "hard  ROCK", "Post-Rock", "R&B", "J-Pop", "Søren Folk", "Drum & Bass",
          "日本のロック", "Ελληνικό Ροκ", "!!!", "Rock'n'Roll"]
FORMATS = ["mp3", "flac", "ogg", "m4a", None]
WORDS = ["love", "lover", "rock", "night", "garden", "gardens"]


def _library() -> list[Track]:
    tracks = []
    for n in range(72):
        genres = [GENRES[n % len(GENRES)]] + ([GENRES[(n * 5 + 3) % len(GENRES)]] if n % 3 == 0 else [])
        title = " ".join(WORDS[(n * k) % len(WORDS)] for k in range(1, 2 + n % 3))
        year = None if n % 11 == 0 else 1960 + (n * 7) % 60
        fmt = FORMATS[n % len(FORMATS)]
        tags = Tags(title=title, artist=f"Artist {n % 9}", album=WORDS[n % len(WORDS)], genres=genres, year=year)
        audio = AudioInfo(format=fmt, duration_s=None if n % 13 == 0 else 60.0 + n * 7, mime_type="audio/x", codec=fmt)
        tracks.append(make_track(n, tags=tags, audio=audio, created_at=NOW - timedelta(hours=n % 40)))
    return tracks


@pytest.fixture
async def library(catalog: Catalog) -> tuple[Catalog, dict[str, Track]]:
    tracks = _library()
    await catalog.add_many(tracks)
    return catalog, {str(track.id): track for track in tracks}


def _passes(track: Track, filters: SearchFilters) -> bool:
    keys = {normalize_genre(genre) for genre in track.tags.genres}
    if filters.genre and not keys & {normalize_genre(genre) for genre in filters.genre}:
        return False
    if filters.format and track.audio.format not in filters.format:
        return False
    year, duration = track.tags.year, track.audio.duration_s
    for value, bound in ((year, filters.year), (duration, filters.duration)):
        if bound is not None and (
            value is None or (bound.min is not None and value < bound.min) or (bound.max is not None and value > bound.max)
        ):
            return False
    return True


async def _pages(catalog: Catalog, request: SearchRequest) -> list[Any]:
    """Every page of ``request`` (limit 4): (ids, scores, total, relation) each."""
    pages, cursor = [], None
    while True:
        result = await catalog.search(request.model_copy(update={"limit": 4, "cursor": cursor}))
        pages.append(([str(hit.track.id) for hit in result.items], [hit.score for hit in result.items],
                      result.total, result.total_relation))
        cursor = result.next_cursor
        if cursor is None:
            return pages


FILTERS = [
    SearchFilters(genre=["rock"], year=RangeFilter(min=1970, max=2005)),
    SearchFilters(genre=["HARD ROCK", "r&b"], format=["mp3", "ogg"]),
    SearchFilters(genre=["j-pop", "Soren folk", "日本のロック"], year=RangeFilter(min=1980)),
    SearchFilters(genre=["Ελληνικό ροκ", "drum & bass"], duration=RangeFilter(max=400)),
    SearchFilters(genre=["!!!", "post-rock"], format=["flac"]),
    SearchFilters(genre=["rock'n'roll", "nothing like it"], year=RangeFilter(max=2000), format=["m4a", "mp3"]),
    SearchFilters(format=["mp3"], year=RangeFilter(min=1975, max=1999)),
]
QUERIES = ["", "love", "gard", "artist:artist", "night love", "love -night"]


@pytest.mark.parametrize(("filters", "query"), list(itertools.product(FILTERS, QUERIES)))
@pytest.mark.parametrize(("sort", "share"), [("relevance", 1.0), ("title", 1.0), ("relevance", 0.0)])
async def test_filters_answer_as_the_unfiltered_search_filtered(
    library: tuple[Catalog, dict[str, Track]], filters: SearchFilters, query: str, sort: str, share: float,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``share``: 1.0 takes SQLite's postings paths wherever they apply, 0.0 (nearly) never."""
    monkeypatch.setattr(tuning, "PREFER_GENRE_POSTINGS", share)
    monkeypatch.setattr(tuning, "PREFER_PREFILTER", share)
    catalog, by_id = library
    request = SearchRequest(query=query, filters=filters, sort=sort)
    everything = [hit for ids, *_ in await _pages(catalog, SearchRequest(query=query, sort=sort)) for hit in ids]
    expected = [track_id for track_id in everything if _passes(by_id[track_id], filters)]
    pages = await _pages(catalog, request)
    assert [track_id for ids, *_ in pages for track_id in ids] == expected
    assert {(total, relation) for _, _, total, relation in pages} == {(len(expected), "eq")}
    unfiltered = {track_id: score for ids, scores, *_ in await _pages(catalog, SearchRequest(query=query, sort=sort))
                  for track_id, score in zip(ids, scores, strict=True)}
    assert [score for _, scores, *_ in pages for score in scores] == [unfiltered[track_id] for track_id in expected]
    faceted = await catalog.search(request.model_copy(update={"facets": True, "limit": 1}))
    matched = [by_id[track_id] for track_id in expected]
    assert faceted.facets is not None
    assert faceted.facets["format"] == _counts(track.audio.format for track in matched)
    assert faceted.facets["decade"] == _counts(f"{track.tags.year // 10 * 10}s" for track in matched if track.tags.year)
    assert faceted.facets["genre"] == _counts(
        key for track in matched for key in {normalize_genre(genre) for genre in track.tags.genres}
    )


def _counts(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        if value is not None:
            counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def test_the_postings_paths_apply_to_these_searches() -> None:
    """The comparisons above cover the SQLite paths they are meant to pin."""

    def builder(query: str, filters: SearchFilters) -> Builder:
        return Builder("sqlite", parse_query(query), filters)

    assert walk.genre_candidates(builder("", FILTERS[0])) is not None
    assert walk.genre_candidates(builder("", FILTERS[4])) is None  # "!!!" has no words: the plain path
    assert walk.genre_candidates(builder("love", FILTERS[0])) is None  # text drives
    assert walk.genre_candidates(builder("", SearchFilters(genre=["rock"]))) is None  # nothing to check there
    assert walk.genre_candidates(builder("", FILTERS[2])) is not None
    assert walk.prefilter(builder("gard", FILTERS[0]), "m.rid") is not None
    assert walk.prefilter(builder("love -night", FILTERS[6]), "m.rid") is not None
    assert walk.prefilter(builder("night love", FILTERS[6]), "m.rid") is None  # two terms
    assert walk.prefilter(builder("love", SearchFilters(genre=["rock"])), "m.rid") is None  # nothing carried
    assert walk.genre_candidates(Builder("postgresql", parse_query(""), FILTERS[0])) is None


@pytest.mark.parametrize("genre", [*GENRES, "Hip-Hop", "Ａｍｂｉｅｎｔ", "Straße", "K-POP", "  Trip   Hop ", "Łódź Jazz",
                                   "Æther", "Ça Ira", "東京", "X" * 80, "a/b/c", "🔥 Fire"])
def test_a_genre_keys_words_are_its_names_words(genre: str) -> None:
    """What the genre postings path relies on: every word of a genre's key (``track_genres``) is a
    word its name is indexed by (``search_genre``)."""
    assert set(index_text(normalize_genre(genre)).split()) <= set(index_text(genre).split())
