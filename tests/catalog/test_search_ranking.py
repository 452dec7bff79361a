"""The ranking rules (docs/search.md, "Ranking"), one test each, on both engines (the ``catalog``
fixture): fewer typos first; a word being typed matched whole before matched as a prefix; more query
words in one field before the same words scattered; all of them adjacent and in order next; equal
scores newest first, the same through cursors and with or without the postings walk.
"""

from __future__ import annotations

from typing import Any

import pytest

from loist.catalog import Catalog
from loist.catalog.search import tuning
from loist.model import SearchRequest, Tags
from tests.catalog.factories import make_track


def track(n: int, title: str, artist: str = "Nobody", album: str = "Nothing", **more: Any) -> Any:
    """Track ``n``: a larger ``n`` is added later (newer)."""
    tags = Tags(title=title, artist=artist, album=album, album_artist=None, genres=[], composer=None, label=None,
                year=more.pop("year", 1999))
    return make_track(n, tags=tags, **more)


async def ranked(catalog: Catalog, query: str, **more: Any) -> list[str]:
    result = await catalog.search(SearchRequest(query=query, limit=100, **more))
    return [hit.track.tags.title or "" for hit in result.items]


async def pages(catalog: Catalog, query: str, limit: int = 1) -> list[str]:
    request = SearchRequest(query=query, limit=limit)
    out: list[str] = []
    result = await catalog.search(request)
    while True:
        out += [hit.track.tags.title or "" for hit in result.items]
        if result.next_cursor is None:
            return out
        result = await catalog.search(request.model_copy(update={"cursor": result.next_cursor}))


async def test_fewer_typos_rank_first(catalog: Catalog) -> None:
    # Same field, same length (the same impact): before, a tie broken by the track key.
    # "beyonse" -> "beyonce" is one edit, -> "beyond" two; Beyond is newer, so only the rule puts Halo first.
    await catalog.add_many([track(1, "Halo", artist="Beyoncé"), track(2, "Beyond", artist="Someone")])
    for query in ("beyonse", "beyonse "):
        result = await catalog.search(SearchRequest(query=query))
        assert [hit.track.tags.title for hit in result.items] == ["Halo", "Beyond"]
        assert result.items[0].score - result.items[1].score == tuning.TYPO  # one edit saved
    assert await pages(catalog, "beyonse") == ["Halo", "Beyond"]


async def test_a_word_being_typed_matched_whole_ranks_above_a_prefix_match(catalog: Catalog) -> None:
    # "Lover" is newer and "Love Song" is in the album only: the whole word still comes first,
    # then the longer words, each group by field and length.
    await catalog.add_many([
        track(1, "Love"),
        track(2, "Something", album="Love"),
        track(3, "Lover"),
        track(4, "Lovers Rock"),
    ])
    assert await ranked(catalog, "love") == ["Love", "Something", "Lover", "Lovers Rock"]
    assert await pages(catalog, "love") == ["Love", "Something", "Lover", "Lovers Rock"]
    # A finished word is matched whole only.
    assert await ranked(catalog, "love ") == ["Love", "Something"]
    # With a filter the postings carry (walked in the index), the same order.
    assert await ranked(catalog, "love year:1990..1999") == ["Love", "Something"]
    assert await ranked(catalog, "love", filters={"year": {"min": 1990}}) == ["Love", "Something", "Lover", "Lovers Rock"]


async def test_words_together_in_one_field_rank_above_the_same_words_scattered(catalog: Catalog) -> None:
    # Scattered: "pink" in a one-word title and "floyd" in a one-word artist score more impact
    # (2 x 2,500) than both in a two-word artist (2 x 2,000), and the scattered track is newer.
    await catalog.add_many([track(1, "Money", artist="Pink Floyd"), track(2, "Pink", artist="Floyd")])
    result = await catalog.search(SearchRequest(query="pink floyd "))
    assert [hit.track.tags.title for hit in result.items] == ["Money", "Pink"]
    assert result.items[0].score == 2 * 2000 + tuning.TOGETHER + tuning.PHRASE
    assert result.items[1].score == 2 * 2500


async def test_words_adjacent_and_in_order_rank_above_the_same_words_apart(catalog: Catalog) -> None:
    await catalog.add_many([
        track(1, "Highway Hell Road"),
        track(2, "Hell Highway Road"),  # newer, same words, same field: not in the typed order
        track(3, "Highway Road Hell"),  # newer still: in order, not adjacent
    ])
    assert await ranked(catalog, "highway hell ") == ["Highway Hell Road", "Highway Road Hell", "Hell Highway Road"]
    assert await ranked(catalog, "highway he") == ["Highway Hell Road", "Highway Road Hell", "Hell Highway Road"]


@pytest.mark.parametrize("query", ["same", "same ", "same year:1990..", "title:same", "same format:mp3"])
async def test_equal_scores_are_newest_first_on_every_page(catalog: Catalog, query: str) -> None:
    await catalog.add_many([track(n, "Same", album=f"Album {n}") for n in (3, 1, 5, 2, 4)])
    newest_first = ["Album 5", "Album 4", "Album 3", "Album 2", "Album 1"]
    result = await catalog.search(SearchRequest(query=query, limit=100))
    assert [hit.track.tags.album for hit in result.items] == newest_first
    assert len({hit.score for hit in result.items}) == 1
    request = SearchRequest(query=query, limit=2)
    paged: list[str] = []
    while True:
        page = await catalog.search(request)
        paged += [hit.track.tags.album or "" for hit in page.items]
        if page.next_cursor is None:
            break
        request = request.model_copy(update={"cursor": page.next_cursor})
    assert paged == newest_first


async def test_the_rules_hold_without_the_postings_walk(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    await catalog.add_many([track(1, "Love"), track(2, "Something", album="Love"), track(3, "Lover"),
                            track(4, "Same"), track(5, "Same")])
    for query in ("love", "love year:1990..", "same"):
        walked = await pages(catalog, query)
        monkeypatch.setattr(tuning, "WALK_POSTINGS", False)
        assert await pages(catalog, query) == walked
        monkeypatch.setattr(tuning, "WALK_POSTINGS", True)


async def test_a_cursor_past_two_to_the_31_is_read(catalog: Catalog) -> None:
    """Scores of several TYPO ranks pass PostgreSQL's ``integer``: the cursor's key binds as 64 bits."""
    from loist.catalog.search.paging import encode_search_cursor, request_fingerprint

    await catalog.add_many([track(1, "Same"), track(2, "Same")])
    request = SearchRequest(query="same -zzz", limit=1)  # an exclusion: ranked in full, the cursor in SQL
    first = await catalog.search(request)
    assert first.next_cursor is not None
    key = [3 * tuning.TYPO, "2026-01-01T12:00:00+00:00", str(first.items[0].track.id)]
    if catalog.dialect == "sqlite":
        key[2] = 1
    cursor = encode_search_cursor(request_fingerprint(request, "desc"), key, 2, False)
    page = await catalog.search(request.model_copy(update={"cursor": cursor}))
    assert [hit.track.tags.title for hit in page.items] == ["Same"]
