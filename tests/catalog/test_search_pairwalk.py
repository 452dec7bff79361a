"""The pair walk (PostgreSQL only: ``genre:rock word``, loist.catalog.search.pairwalk) gives exactly
the pages that ranking every match gives, whether the bounded probe (WALK_PAIR_MIN_TOP) takes it or
not: the same hits in the same order, the same scores, total and relation, and the same pages after
the first through the cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from loist.catalog import Catalog
from loist.catalog.migrate import upgrade
from loist.catalog.search import pairwalk, tuning
from loist.library.synthetic import generate_tracks
from loist.model import SearchRequest

pytestmark = pytest.mark.postgres

QUERIES = ["genre:rock love", "genre:rock lov", "genre:rock garden", "genre:rock night", "genre:rock fire",
           "genre:rock s", "genre:rock river year:1990..1999", "genre:jazz blue", "genre:rock zzzz",
           "genre:pop the"]


@pytest.fixture
async def seeded(fresh_pg_url: str) -> AsyncIterator[Catalog]:
    await upgrade(fresh_pg_url)
    async with Catalog.from_url(fresh_pg_url) as catalog:
        await catalog.add_many(list(generate_tracks(3000, seed=7)))
        yield catalog


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each search that got past the probe, whether the pair walk answered it."""
    taken: list[bool] = []
    original = pairwalk.pair_page

    async def spy(*args: Any, **kwargs: Any) -> Any:
        inner = await original(*args, **kwargs)
        taken.append(inner is not None)
        return inner

    monkeypatch.setattr(pairwalk, "pair_page", spy)
    return taken


async def pages(catalog: Catalog, query: str, limit: int) -> list[Any]:
    out = []
    request = SearchRequest(query=query, limit=limit)
    result = await catalog.search(request)
    while True:
        out.append(([hit.track.id for hit in result.items], [hit.score for hit in result.items],
                    result.total, result.total_relation))
        if result.next_cursor is None or len(out) == 4:
            return out
        result = await catalog.search(request.model_copy(update={"cursor": result.next_cursor}))


async def test_the_pair_walk_gives_the_pages_a_full_ranking_gives(
    seeded: Catalog, monkeypatch: pytest.MonkeyPatch, walked: list[bool]
) -> None:
    for query in QUERIES:
        for limit in (1, 10):
            monkeypatch.setattr(tuning, "WALK_PAIRS", False)
            ranked = await pages(seeded, query, limit)
            monkeypatch.setattr(tuning, "WALK_PAIRS", True)
            monkeypatch.setattr(tuning, "WALK_PAIR_MIN_TOP", 0)  # the walk for every word
            assert await pages(seeded, query, limit) == ranked, (query, limit)
            monkeypatch.setattr(tuning, "WALK_PAIR_MIN_TOP", 10**9)  # the walk for none
            assert await pages(seeded, query, limit) == ranked, (query, limit)
    assert walked.count(True) >= 10  # the walk answered most first pages


async def test_the_probe_takes_the_walk_only_for_words_with_many_top_titles(
    seeded: Catalog, monkeypatch: pytest.MonkeyPatch, walked: list[bool]
) -> None:
    async with seeded.engine.connect() as conn:
        top = await pairwalk.top_titles(conn, ["love"])
        assert top > 0
        assert await pairwalk.top_titles(conn, ["love", "zzzz"]) == top
    monkeypatch.setattr(tuning, "WALK_PAIR_MIN_TOP", top + 1)
    await seeded.search(SearchRequest(query="genre:rock love "))  # a finished word: no completions
    assert walked == []
    monkeypatch.setattr(tuning, "WALK_PAIR_MIN_TOP", top)
    await seeded.search(SearchRequest(query="genre:rock love "))  # a finished word: no completions
    assert walked == [True]
