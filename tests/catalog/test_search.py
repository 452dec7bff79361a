"""Search behaviour, one suite run against SQLite and PostgreSQL (the ``catalog`` fixture is both).

Every expectation is written once: when the two engines disagree, one of the two runs fails.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from loist.catalog import Catalog
from loist.errors import InvalidArgument
from loist.model import (
    AudioInfo,
    RangeFilter,
    SearchFilters,
    SearchRequest,
    SearchResult,
    Tags,
    TrackStatus,
)
from tests.catalog.factories import make_track

NOW = datetime.now(UTC)

# title, artist, album, genres, year, format, duration_s, extra tags
LIBRARY: list[tuple[str, str, str, list[str], int | None, str, float, dict[str, Any]]] = [
    ("Hejira", "Joni Mitchell", "Hejira", ["Folk"], 1976, "flac", 400.0, {}),
    ("Hoppípolla", "Sigur Rós", "Takk...", ["Post-Rock"], 2005, "mp3", 268.0, {}),
    ("Highway to Hell", "AC/DC", "Highway to Hell", ["Hard Rock"], 1979, "mp3", 208.0, {}),
    ("Losing My Religion", "R.E.M.", "Out of Time", ["Alternative"], 1991, "flac", 268.0, {}),
    ("Halo", "Beyoncé", "I Am... Sasha Fierce", ["R&B", "Pop"], 2008, "m4a", 261.0, {}),
    ("東京タワー", "東京事変", "大人", ["J-Pop"], 2006, "mp3", 250.0, {}),
    ("Группа крови", "Кино", "Группа крови", ["Rock"], 1988, "ogg", 285.0, {}),
    ("إنت عمري", "أم كلثوم", "إنت عمري", ["Arabic Classical"], 1964, "mp3", 1200.0, {}),
    ("봄날", "BTS", "You Never Walk Alone", ["K-Pop"], 2017, "mp3", 274.0, {}),
    ("Rock'n'Roll Train", "AC/DC", "Black Ice", ["Hard Rock"], 2008, "mp3", 261.0, {}),
    ("Paradise", "Coldplay", "Mylo Xyloto", ["Pop"], 2011, "flac", 278.0, {}),
    ("Intro", "Eagles", "Paradise Lost", ["Rock"], 1994, "wav", 95.0, {}),
    ("Blue", "Nobody", "Colours", ["Jazz"], None, "opus", 31.0, {"label": "Paradise Records"}),
    ("Fire 🔥 Song", "Emoji Band", "Signs", ["Electronic"], 2024, "mp3", 1190.0, {"composer": "J. S. Bach"}),
]
COMPLETED_TITLES = {row[0] for row in LIBRARY}


def _track(n: int, title: str, artist: str, album: str, genres: list[str], year: int | None, fmt: str,
           duration: float, extra: dict[str, Any], **overrides: Any) -> Any:
    return make_track(
        n,
        tags=Tags(title=title, artist=artist, album=album, genres=genres, year=year, **extra),
        audio=AudioInfo(format=fmt, duration_s=duration, mime_type="audio/x", codec=fmt),
        created_at=NOW - timedelta(days=n),
        **overrides,
    )


@pytest.fixture
async def library(catalog: Catalog) -> Catalog:
    tracks = [_track(n, *row) for n, row in enumerate(LIBRARY)]
    # Tracks that are not COMPLETED are never found, even when they match.
    tracks.append(_track(90, "Paradise Pending", "Coldplay", "X", ["Pop"], 2011, "mp3", 200.0, {},
                         status=TrackStatus.PENDING))
    tracks.append(_track(91, "Paradise Failed", "Coldplay", "X", ["Pop"], 2011, "mp3", 200.0, {},
                         status=TrackStatus.FAILED, error_code="FETCH_FAILED", sha256=None))
    await catalog.add_many(tracks)
    return catalog


async def search(catalog: Catalog, query: str = "", **kwargs: Any) -> SearchResult:
    return await catalog.search(SearchRequest(query=query, **kwargs))


def titles(result: SearchResult) -> list[str]:
    return [hit.track.tags.title or "" for hit in result.items]


async def found(catalog: Catalog, query: str, **kwargs: Any) -> set[str]:
    result = await search(catalog, query, limit=100, **kwargs)
    assert result.total == len(result.items)
    return set(titles(result))


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # accents folded, either way round
        ("sigur ros", {"Hoppípolla"}),
        ("SIGUR RÓS", {"Hoppípolla"}),
        ("hoppipolla", {"Hoppípolla"}),
        ("beyonce", {"Halo"}),
        # punctuation tolerated
        ("acdc", {"Highway to Hell", "Rock'n'Roll Train"}),
        ("AC/DC", {"Highway to Hell", "Rock'n'Roll Train"}),
        ("ac dc", {"Highway to Hell", "Rock'n'Roll Train"}),
        ("rem", {"Losing My Religion"}),
        ("r.e.m.", {"Losing My Religion"}),
        ("R.E.M.", {"Losing My Religion"}),
        ("rock'n'roll", {"Rock'n'Roll Train"}),
        ("rocknroll", {"Rock'n'Roll Train"}),
        # prefix on the last word while typing; a trailing space ends the word
        ("beyon", {"Halo"}),
        ("highway to he", {"Highway to Hell"}),
        ("hej", {"Hejira"}),
        ("hejira ", {"Hejira"}),
        # non-Latin scripts
        ("東京", {"東京タワー"}),
        ("タワー", {"東京タワー"}),
        ("東", {"東京タワー"}),
        ("事変", {"東京タワー"}),
        ("группа", {"Группа крови"}),
        ("КРОВИ", {"Группа крови"}),
        ("عمري", {"إنت عمري"}),
        ("봄날", {"봄날"}),
        ("🔥", {"Fire 🔥 Song"}),
        # phrases, exclusions
        ('"highway to hell"', {"Highway to Hell"}),
        ('"hell to highway"', set()),
        ("hell -train", {"Highway to Hell"}),
        ("acdc -highway", {"Rock'n'Roll Train"}),
        ('acdc -"highway to"', {"Rock'n'Roll Train"}),
        ("paradise -label:paradise", {"Paradise", "Intro"}),
        ("-train -hell -paradise -year:1990..1999", COMPLETED_TITLES - {"Rock'n'Roll Train", "Highway to Hell", "Paradise", "Intro", "Blue"}),
        # fields
        ("artist:ac/dc", {"Highway to Hell", "Rock'n'Roll Train"}),
        ("title:hell", {"Highway to Hell"}),
        ("album:paradise", {"Intro"}),
        ("label:paradise", {"Blue"}),
        ("composer:bach", {"Fire 🔥 Song"}),
        ("genre:rock", {"Hoppípolla", "Highway to Hell", "Группа крови", "Rock'n'Roll Train", "Intro"}),
        ('genre:"hard rock"', {"Highway to Hell", "Rock'n'Roll Train"}),
        ("artist:paradise", set()),
        ('artist:"sigur ros"', {"Hoppípolla"}),
        ("format:flac", {"Hejira", "Losing My Religion", "Paradise"}),
        ("format:flac,wav", {"Hejira", "Losing My Religion", "Paradise", "Intro"}),
        ("paradise -format:flac", {"Intro", "Blue"}),
        # ranges
        ("year:1990..1999", {"Losing My Religion", "Intro"}),
        ("year:1990s", {"Losing My Religion", "Intro"}),
        ("year:2010..", {"Paradise", "봄날", "Fire 🔥 Song"}),
        ("year:..1970", {"إنت عمري"}),
        ("year:1976", {"Hejira"}),
        ("duration:..1:00", {"Blue"}),
        ("duration:19:00..", {"إنت عمري", "Fire 🔥 Song"}),
        ("duration:260..262", {"Halo", "Rock'n'Roll Train"}),
        ("acdc year:2000..", {"Rock'n'Roll Train"}),
        ("added:-3d..", {"Hejira", "Hoppípolla", "Highway to Hell"}),
        ("added:-3d", {"Hejira", "Hoppípolla", "Highway to Hell"}),
        (f"added:{(NOW - timedelta(days=400)).date().isoformat()}..", COMPLETED_TITLES),
        ("added:..2000-01-01", set()),
        # unknown fields and broken ranges are plain words (and find nothing here)
        ("year:abc", set()),
        ("mood:happy", set()),
    ],
)
async def test_query_language(library: Catalog, query: str, expected: set[str]) -> None:
    assert await found(library, query) == expected


async def test_typo_tolerance_finds_the_nearest_words(library: Catalog) -> None:
    assert await found(library, "beyonse") == {"Halo"}
    assert await found(library, "joni mitchel") == {"Hejira"}
    assert await found(library, "higway hell") == {"Highway to Hell"}
    assert await found(library, "sigur rosss") == {"Hoppípolla"}
    # Pages of a fuzzy result continue in the fuzzy pass.
    whole = titles(await search(library, "paradize", limit=100))
    assert set(whole) == {"Paradise", "Intro", "Blue"}
    paged: list[str] = []
    cursor = None
    for _ in range(5):
        page = await search(library, "paradize", limit=1, cursor=cursor)
        assert page.total == 3
        paged += titles(page)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert paged == whole
    # A word that is right is not widened: the typo pass only replaces unknown words.
    assert await found(library, "hell qqqqzzzz") == set()


async def test_the_typo_pass_replaces_the_misspelt_word_with_the_nearest_ones(library: Catalog) -> None:
    """The unknown word is in no track: the second search tries only its nearest words (ties and
    near-ties of the best, by the one Python similarity), not the word itself."""
    from loist.catalog.query import parse_query
    from loist.catalog.search import tuning
    from loist.catalog.search.fuzzy import fuzzy_rewrite
    from loist.catalog.text import similarity

    async with library._engine.connect() as conn:
        rewritten = await fuzzy_rewrite(conn, library.dialect, parse_query("beyonse "))
    assert rewritten is not None
    (token,) = [token for term in rewritten.terms for group in term.alternatives for token in group]
    tried = [token.text, *token.fuzzy]
    assert "beyonse" not in tried and "beyonce" in tried and not token.prefix
    best = similarity("beyonse", tried[0])
    assert all(similarity("beyonse", word) >= best - tuning.FUZZY_MARGIN - 1e-9 for word in tried)


@pytest.mark.parametrize(
    "query",
    ["", "(", ")", '"', '""', "&|!", "'", "-", "--", ":", "title:", "year:", "a:b:c", "\\", "%", "_", "*",
     "rock'n'roll(", "NOT", "AND OR", "x" * 10_000, "🎵🎶", "\x00", "' OR 1=1 --", "year:1990..1980",
     "duration:..", "added:..", "added:-999999999y..", "added:2024-13-45", " ".join(["w"] * 5000)],
)
async def test_any_string_is_a_valid_query(library: Catalog, query: str) -> None:
    result = await search(library, query)
    assert result.total >= 0
    assert len(result.items) <= 20


@pytest.mark.parametrize("query", ["", "(", "&|!", '"', "-", "'"])
async def test_a_query_without_words_lists_the_library(library: Catalog, query: str) -> None:
    assert await found(library, query) == COMPLETED_TITLES


async def test_only_completed_tracks_are_found(library: Catalog) -> None:
    assert await found(library, "paradise") == {"Paradise", "Intro", "Blue"}
    assert (await search(library)).total == len(LIBRARY)


async def test_ranking_title_and_artist_above_album_above_label(library: Catalog) -> None:
    result = await search(library, "paradise")
    assert titles(result) == ["Paradise", "Intro", "Blue"]
    scores = [hit.score for hit in result.items]
    assert scores[0] > scores[1] > scores[2] > 0


async def test_structured_filters_combine_with_the_text(library: Catalog) -> None:
    filters = SearchFilters(genre=["HARD ROCK", "post-rock"], year=RangeFilter(min=1979, max=2006))
    assert await found(library, "", filters=filters) == {"Highway to Hell", "Hoppípolla"}
    filters = SearchFilters(format=["MP3"], duration=RangeFilter(max=262))
    assert await found(library, "", filters=filters) == {"Highway to Hell", "東京タワー", "Rock'n'Roll Train"}
    assert await found(library, "acdc", filters=SearchFilters(genre=["Pop"])) == set()
    filters = SearchFilters(genre=["pop"])
    assert await found(library, "", filters=filters) == {"Halo", "Paradise"}
    # the query's own filters and the structured ones both apply
    assert await found(library, "format:flac", filters=SearchFilters(year=RangeFilter(min=2000))) == {"Paradise"}


SORTS = ["relevance", "title", "artist", "album", "year", "duration", "added"]


@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("order", ["asc", "desc", None])
@pytest.mark.parametrize("query", ["", "rock", "a"])
async def test_pages_cover_the_whole_result_exactly_once(
    library: Catalog, sort: str, order: str | None, query: str
) -> None:
    whole = await search(library, query, sort=sort, order=order, limit=100)
    assert whole.next_cursor is None
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await search(library, query, sort=sort, order=order, limit=2, cursor=cursor)
        assert page.total == whole.total
        seen.extend(str(hit.track.id) for hit in page.items)
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
        assert pages <= 20
    assert seen == [str(hit.track.id) for hit in whole.items]
    assert len(seen) == whole.total


@pytest.mark.parametrize(
    ("sort", "order", "first", "last"),
    [
        ("title", "asc", "Blue", "봄날"),  # code point order of the folded text, on both engines
        ("title", "desc", "봄날", "Blue"),
        ("year", "desc", "Fire 🔥 Song", "Blue"),  # no year sorts as year 0
        ("duration", "asc", "Blue", "إنت عمري"),
        ("added", "desc", "Hejira", "Fire 🔥 Song"),
        ("relevance", None, "Hejira", "Fire 🔥 Song"),  # no text: newest first
        ("album", "asc", "Rock'n'Roll Train", "東京タワー"),  # "black ice" ... "大人"
    ],
)
async def test_sort_orders(library: Catalog, sort: str, order: str | None, first: str, last: str) -> None:
    result = await search(library, sort=sort, order=order, limit=100)
    assert titles(result)[0] == first
    assert titles(result)[-1] == last


async def test_cursor_from_another_search_or_garbage_is_invalid_argument(library: Catalog) -> None:
    page = await search(library, "", limit=2)
    assert page.next_cursor
    with pytest.raises(InvalidArgument):
        await search(library, "rock", limit=2, cursor=page.next_cursor)
    with pytest.raises(InvalidArgument):
        await search(library, "", limit=2, sort="title", cursor=page.next_cursor)
    for garbage in ["x", "!!!", "eyJmIjoxfQ", page.next_cursor[:-3]]:
        with pytest.raises(InvalidArgument):
            await search(library, "", limit=2, cursor=garbage)


async def test_facets_count_the_whole_result(library: Catalog) -> None:
    result = await search(library, "acdc", facets=True, limit=1)
    assert result.facets == {
        "genre": {"hard rock": 2},
        "format": {"mp3": 2},
        "decade": {"1970s": 1, "2000s": 1},
    }
    everything = await search(library, facets=True)
    assert everything.facets is not None
    assert sum(everything.facets["format"].values()) == len(LIBRARY)
    assert everything.facets["genre"]["rock"] == 2
    assert everything.facets["genre"]["pop"] == 2
    assert "unknown" not in everything.facets["decade"]
    assert (await search(library, "acdc")).facets is None


async def test_index_follows_updates_and_deletes(library: Catalog) -> None:
    hit = (await search(library, "hejira")).items[0].track
    await library.update_tags(hit.id, hit.tags.model_copy(update={"title": "Coyote", "album": "Blue Motel"}))
    assert await found(library, "hejira") == set()
    assert await found(library, "coyote") == {"Coyote"}
    await library.delete(hit.id)
    assert await found(library, "coyote") == set()
    # a word that only existed in a deleted track stays in the typo vocabulary but finds nothing
    assert await found(library, "coyotte") == set()


async def test_random_strings_never_fail(library: Catalog) -> None:
    """Fuzz: operators, quotes, fields, ranges, marks, CJK, emoji, control characters, all mixed."""
    import random

    rng = random.Random(4)
    alphabet = list("abcxyz AC/DC r.e.m. \"'()-:*^~&|!.,;%_\\") + ["year:", "duration:", "added:", "..", "-", "title:",
                                                               "genre:", "format:", "NOT", "OR", "NEAR", "東京", "é",
                                                               "\u0301", "🔥", "\x00", "\t", "ß", "ı", "Ω", "\u200d"]
    for _ in range(150):
        query = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        result = await search(library, query)
        assert result.total >= len(result.items)


async def test_counting_stops_at_the_bound_and_says_so(library: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond COUNT_LIMIT the total is the bound and a lower bound ("gte"), the same on both
    engines whichever way the count is made (window, index count, bounded count)."""
    from loist.catalog.search import tuning

    everything = await search(library, "", limit=100)
    assert everything.total_relation == "eq"
    assert everything.total == len(everything.items) == len(COMPLETED_TITLES)
    monkeypatch.setattr(tuning, "COUNT_LIMIT", 3)
    for query, kwargs in [
        ("", {}),  # bounded count over tracks
        ("acdc -zzz", {}),  # negation: bounded count with the text condition
        ("year:1900..", {}),  # a range (SQLite counts on the sort index)
        ("", {"filters": SearchFilters(year=RangeFilter(min=1900))}),
    ]:
        first = await search(library, query, limit=2, **kwargs)
        expected = await search(library, query, limit=100, **kwargs)
        if len(expected.items) > 3:
            assert (first.total, first.total_relation) == (3, "gte"), query
            assert first.next_cursor is not None
            second = await search(library, query, limit=2, cursor=first.next_cursor, **kwargs)
            assert (second.total, second.total_relation) == (3, "gte"), query  # carried by the cursor
        else:
            assert (first.total, first.total_relation) == (len(expected.items), "eq"), query
    # Text alone (FTS5 window / PostgreSQL side table): "paradise" matches 3, under the bound.
    few = await search(library, "paradise")
    assert (few.total, few.total_relation) == (3, "eq")
    monkeypatch.setattr(tuning, "COUNT_LIMIT", 2)
    capped = await search(library, "paradise")
    assert (capped.total, capped.total_relation) == (2, "gte")
    assert len(capped.items) == 3  # the page itself is not cut by the bound


@pytest.mark.parametrize("query", ["rock", "roc", "rock year:1980..", "genre:rock", "rock duration:..300"])
async def test_a_bounded_count_is_the_true_count_up_to_the_bound(
    library: Catalog, monkeypatch: pytest.MonkeyPatch, query: str
) -> None:
    """However a walked search's total is found (its lists read to their ends; one postings list
    longer than the bound, on PostgreSQL; counting the matches), it is min(matches, COUNT_LIMIT),
    and "gte" exactly when more match."""
    from loist.catalog.search import tuning

    everything = await search(library, query, limit=100)
    assert everything.total_relation == "eq" and everything.total == len(everything.items) >= 3
    for bound in range(1, everything.total + 2):
        monkeypatch.setattr(tuning, "COUNT_LIMIT", bound)
        first = await search(library, query, limit=1)
        expected = (min(everything.total, bound), "gte" if everything.total > bound else "eq")
        assert (first.total, first.total_relation) == expected, (query, bound)


def test_the_counting_bound_is_the_documented_one() -> None:
    """A UI shows "1,000+": the bound, docs/search.md, docs/mcp.md and the tool schema agree."""
    from pathlib import Path

    from loist.catalog.search import tuning
    from loist.mcp.schemas import SearchOutput

    assert tuning.COUNT_LIMIT == 1_000
    root = Path(__file__).resolve().parents[2]
    assert "exact up to 1,000" in (root / "docs" / "search.md").read_text()
    assert "exact up to 1,000" in (root / "docs" / "mcp.md").read_text()
    description = SearchOutput.model_fields["total_relation"].description or ""
    assert "1,000" in description


async def test_a_lone_short_word_is_matched_whole_not_as_a_prefix(library: Catalog) -> None:
    # "he" alone would be a prefix of half a library; with other words it still is one.
    assert await found(library, "he") == set()
    assert await found(library, "highway to he") == {"Highway to Hell"}
    assert await found(library, "東") == {"東京タワー"}  # one CJK character stays a prefix


@pytest.mark.parametrize("sort", ["title", "artist", "album", "year", "duration", "added"])
@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_walking_the_sort_index_gives_the_same_pages(
    library: Catalog, monkeypatch: pytest.MonkeyPatch, sort: str, order: str
) -> None:
    """SQLite picks between sorting the matches and walking the sort index by the match count; the
    pages (order, scores, totals, cursors) must not depend on that choice. Forced both ways here."""
    from loist.catalog.search import tuning

    async def pages(query: str) -> list[tuple[list[str], list[float], int, str]]:
        out = []
        result = await search(library, query, sort=sort, order=order, limit=2)
        while True:
            out.append((titles(result), [round(hit.score, 9) for hit in result.items], result.total,
                        result.total_relation))
            if result.next_cursor is None:
                return out
            result = await search(library, query, sort=sort, order=order, limit=2, cursor=result.next_cursor)

    for query in ["paradise", "acdc", "hell -train", "zzzz"]:
        monkeypatch.setattr(tuning, "WALK_FACTOR", 10**9)  # never walk
        sorted_matches = await pages(query)
        monkeypatch.setattr(tuning, "WALK_FACTOR", 0)  # always walk
        walked = await pages(query)
        assert walked == sorted_matches, query
