"""Relevance from the postings: the integer score, the postings kept by triggers, and the walk.

One suite on both engines (the ``catalog`` fixture): the same library must give the same integer
scores on SQLite and PostgreSQL, and reading the best postings (the walk) must give exactly the pages
that scoring every match gives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from loist.catalog import Catalog
from loist.catalog.migrate import downgrade, upgrade
from loist.catalog.search import tuning, walk
from loist.catalog.search.postings import POSTINGS_TABLE, refill_postings
from loist.catalog.search.tuning import FIELD_IDS, IMPACT_DAMPING, IMPACT_SCALE, RANKING
from loist.model import SearchRequest, Tags, TrackStatus
from tests.catalog.factories import insert_old_rows, make_track
from tests.support.pg import sqlite_catalog_url


def impact(field: str, tokens: int) -> int:
    return round(RANKING[field].weight * IMPACT_SCALE) // (tokens + IMPACT_DAMPING)


# title, artist, album, genres: many ties, the same word in several fields of one track, prefixes
# shared by several words, and a word in class-D fields only.
ROWS: list[tuple[str, str, str, list[str]]] = [
    ("Rock", "Stone", "Rock Rock", ["Rock"]),
    ("Rocket Man", "Elton", "Honky", ["Pop"]),
    ("Rockin Robin", "Bobby Day", "Rock", ["Rock", "Doo Wop"]),
    ("Stone Cold", "Rockers United", "Cold", ["Metal"]),
    ("Quiet", "Nobody", "Nothing", ["Rock"]),
    ("Quiet Rock", "Nobody", "Nothing", ["Jazz"]),
    ("Paper Planes", "Rock", "Kala", ["Hip Hop"]),
    ("A Very Long Title With Rock Somewhere In The Middle", "X", "Y", ["Folk"]),
    ("Rocky Road", "Stone", "Road", ["Rock"]),
    ("Rock", "Stone", "Rock Rock", ["Rock"]),  # an exact twin of the first: tie broken by id
    ("Road", "Rock", "Rock", ["Rock"]),
    ("Stone", "Stone", "Stone", ["Stone"]),
]


@pytest.fixture
async def library(catalog: Catalog) -> Catalog:
    tracks = [
        make_track(n, tags=Tags(title=title, artist=artist, album=album, genres=genres, composer=None, label=None,
                                album_artist=None))
        for n, (title, artist, album, genres) in enumerate(ROWS)
    ]
    tracks.append(make_track(99, tags=Tags(title="Rock Pending"), status=TrackStatus.PENDING))
    await catalog.add_many(tracks)
    return catalog


async def _read_postings(conn: Any) -> list[tuple[Any, ...]]:
    rows = await conn.execute(sa.text(f"SELECT term, field, impact, track FROM {POSTINGS_TABLE}"))  # noqa: S608
    return sorted(tuple(str(value) for value in row) for row in rows.all())


async def postings(catalog: Catalog) -> list[tuple[Any, ...]]:
    async with catalog.engine.connect() as conn:
        return await _read_postings(conn)


async def recomputed(catalog: Catalog) -> list[tuple[Any, ...]]:
    """What the postings hold when rebuilt from scratch (rolled back: the table is left as it was)."""
    async with catalog.engine.connect() as conn:
        await conn.run_sync(refill_postings)
        out = await _read_postings(conn)
        await conn.rollback()
    return out


async def pages(catalog: Catalog, query: str, *, limit: int = 2, order: str | None = None, **more: Any) -> list[Any]:
    out = []
    request = SearchRequest(query=query, limit=limit, order=order, **more)
    result = await catalog.search(request)
    while True:
        out.append(([hit.track.tags.title for hit in result.items], [hit.score for hit in result.items],
                    result.total, result.total_relation))
        if result.next_cursor is None:
            return out
        result = await catalog.search(request.model_copy(update={"cursor": result.next_cursor}))


async def test_scores_are_the_documented_integers_on_both_engines(library: Catalog) -> None:
    result = await library.search(SearchRequest(query="stone ", limit=100))  # a finished word: no prefix
    scores = {hit.track.tags.title: hit.score for hit in result.items}
    # title and artist weigh the same: "Stone" by Stone and "Rocky Road" by Stone tie (the newest first)
    assert scores["Stone"] == scores["Rocky Road"] == impact("title", 1) == impact("artist", 1)
    assert scores["Stone Cold"] == impact("title", 2)
    assert [hit.score for hit in result.items][0] == impact("title", 1)
    # two words: the sum of each word's best field (plus, both in one field, adjacent: TOGETHER, PHRASE)
    result = await library.search(SearchRequest(query="quiet rock "))
    assert [(hit.track.tags.title, hit.score) for hit in result.items] == [
        ("Quiet Rock", float(2 * impact("title", 2) + tuning.TOGETHER + tuning.PHRASE)),
        ("Quiet", float(impact("title", 1) + impact("genre", 1))),
    ]


async def test_a_word_in_several_fields_counts_once_at_its_best(library: Catalog) -> None:
    result = await library.search(SearchRequest(query="rock ", limit=100))
    scores = {hit.track.tags.title: hit.score for hit in result.items}
    assert scores["Rock"] == impact("title", 1)  # also in album and genre: the best field only
    assert scores["Paper Planes"] == impact("artist", 1)
    assert scores["Quiet"] == impact("genre", 1)
    assert scores["A Very Long Title With Rock Somewhere In The Middle"] == impact("title", 10)
    assert "Rock Pending" not in scores
    assert result.total == len(result.items) == 9  # a finished word: "rocket", "rockin" are not matched
    ordered = [hit.score for hit in result.items]
    assert ordered == sorted(ordered, reverse=True)


@pytest.mark.parametrize(
    "query",
    ["rock", "roc", "rocke", "stone", "genre:rock", "artist:stone", "album:rock", "title:ro", "eltom ", "quiet",
     "zzz", "road", "quiet rock", "rock -stone", "rock format:mp3", "rock format:flac", "roc -stone -road",
     "genre:rock -quiet", "stone duration:..3:00", "東京", "roc duration:..3:00 -format:flac", "rock year:1990..",
     "genre:rock added:-30d.. format:mp3"],
)
@pytest.mark.parametrize("order", [None, "asc"])
async def test_the_walk_gives_the_pages_a_full_ranking_gives(
    library: Catalog, monkeypatch: pytest.MonkeyPatch, query: str, order: str | None
) -> None:
    monkeypatch.setattr(tuning, "WALK_POSTINGS", False)
    ranked = await pages(library, query, order=order)
    monkeypatch.setattr(tuning, "WALK_POSTINGS", True)
    walked = await pages(library, query, order=order)
    assert walked == ranked
    for limit in (1, 3, 100):
        monkeypatch.setattr(tuning, "WALK_POSTINGS", False)
        ranked = await pages(library, query, limit=limit, order=order)
        monkeypatch.setattr(tuning, "WALK_POSTINGS", True)
        assert await pages(library, query, limit=limit, order=order) == ranked


@pytest.mark.parametrize("max_read", [1, 4, 8192])
@pytest.mark.parametrize("query", ["rock", "roc", "genre:rock", "stone"])
async def test_past_a_cursor_lists_are_read_further_or_the_walk_gives_up(
    library: Catalog, monkeypatch: pytest.MonkeyPatch, query: str, max_read: int
) -> None:
    """Deep pages drop postings of tracks already shown; a list is read further, or (past
    WALK_MAX_READ) the page is ranked in full: the pages are the same."""
    monkeypatch.setattr(tuning, "WALK_MAX_READ", max_read)
    monkeypatch.setattr(tuning, "WALK_POSTINGS", False)
    ranked = await pages(library, query, limit=1)
    monkeypatch.setattr(tuning, "WALK_POSTINGS", True)
    assert await pages(library, query, limit=1) == ranked


@pytest.fixture
def walks_taken(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """Records, for each search that tried the walk, whether the walk answered it."""
    taken: list[bool] = []
    original = walk.walk_page

    async def spy(*args: Any, **kwargs: Any) -> Any:
        inner = await original(*args, **kwargs)
        taken.append(inner is not None)
        return inner

    monkeypatch.setattr(walk, "walk_page", spy)
    return taken


@pytest.mark.parametrize(("query", "walks"), [("rock", True), ("roc", True), ("genre:rock", True), ("eltom ", True),
                                              ("quiet rock", False), ("rock -stone", False), ("rock format:mp3", True),
                                              ("rock duration:..4:00", True), ("rock added:..2100-01-01", True)])
async def test_the_walk_is_taken_for_one_word_alone(library: Catalog, walks_taken: list[bool], query: str,
                                                    walks: bool) -> None:
    taken = walks_taken
    result = await library.search(SearchRequest(query=query))
    assert result.items
    assert (bool(taken) and taken[-1]) is walks


async def test_a_prefix_with_too_many_completions_is_ranked_in_full(
    library: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "ro" + "c": rock, rocket, rockin, rockers, rocky: five words
    monkeypatch.setattr(tuning, "WALK_MAX_WORDS", 4)
    capped = await pages(library, "roc")
    monkeypatch.setattr(tuning, "WALK_MAX_WORDS", 16)
    assert await pages(library, "roc") == capped
    assert capped[0][1] == [impact("title", 1)] * 2


async def test_triggers_keep_the_postings_equal_to_a_rebuild(library: Catalog) -> None:
    assert await postings(library) == await recomputed(library)
    first = (await library.search(SearchRequest(query="paper"))).items[0].track
    await library.update_tags(first.id, Tags(title="Scissors Scissors", artist="Rock Rock Rock"))
    assert await postings(library) == await recomputed(library)
    assert (await library.search(SearchRequest(query="paper"))).total == 0
    hit = (await library.search(SearchRequest(query="scissors "))).items[0]
    assert hit.score == impact("title", 2)
    await library.delete(first.id)
    assert await postings(library) == await recomputed(library)
    assert (await library.search(SearchRequest(query="scissors"))).total == 0
    # A track leaving COMPLETED leaves the postings; coming back restores them.
    stone = (await library.search(SearchRequest(query="title:stone"))).items[0].track
    async with library.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE tracks SET status = 'FAILED' WHERE title = 'Stone'"))
    assert await postings(library) == await recomputed(library)
    assert stone.id not in {hit.track.id for hit in (await library.search(SearchRequest(query="stone"))).items}
    async with library.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE tracks SET status = 'COMPLETED' WHERE title = 'Stone'"))
    assert await postings(library) == await recomputed(library)
    await library.wipe()
    assert await postings(library) == []


async def test_each_posting_holds_its_field_and_impact(catalog: Catalog) -> None:
    track = make_track(1, tags=Tags(title="Alpha Beta Alpha", artist="Gamma", album=None, album_artist=None,
                                    genres=[], composer=None, label="Alpha"))
    await catalog.add(track)
    found = {(term, int(field), int(value)) for term, field, value, _ in await postings(catalog)}
    assert found == {
        ("alpha", FIELD_IDS["title"], impact("title", 3)),  # a repeated word is one posting
        ("beta", FIELD_IDS["title"], impact("title", 3)),
        ("gamma", FIELD_IDS["artist"], impact("artist", 1)),
        ("alpha", FIELD_IDS["label"], impact("label", 1)),
    }


async def test_migration_fills_and_removes_the_postings(tmp_path: Path) -> None:
    url = sqlite_catalog_url(tmp_path)
    await upgrade(url, "0004")
    await insert_old_rows(url, [make_track(n, tags=Tags(title=f"Lima {n}")) for n in range(3)])
    await upgrade(url)
    async with Catalog.from_url(url) as catalog:
        assert len([row for row in await postings(catalog) if row[0] == "lima"]) == 3
        assert (await catalog.search(SearchRequest(query="lima"))).total == 3
    await downgrade(url, "0004")
    async with Catalog.from_url(url) as catalog, catalog.engine.connect() as conn:
        with pytest.raises(sa.exc.OperationalError):
            await conn.execute(sa.text(f"SELECT 1 FROM {POSTINGS_TABLE}"))  # noqa: S608


@pytest.mark.postgres
async def test_postgresql_migration_builds_the_key_after_the_fill(fresh_pg_url: str) -> None:
    await upgrade(fresh_pg_url, "0004")
    await insert_old_rows(fresh_pg_url, [make_track(n, tags=Tags(title=f"Mike {n}", artist="Mike")) for n in range(3)])
    await upgrade(fresh_pg_url)
    async with Catalog.from_url(fresh_pg_url) as catalog:
        assert await postings(catalog) == await recomputed(catalog)
        async with catalog.engine.connect() as conn:
            key = await conn.execute(sa.text(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = :name"
            ), {"name": f"pk_{POSTINGS_TABLE}"})
            assert key.scalar_one() == "PRIMARY KEY (term, field, impact, added, track) INCLUDE (year, duration, format)"
        # the trigger works after the migration
        await catalog.add(make_track(9, tags=Tags(title="November")))
        assert (await catalog.search(SearchRequest(query="november"))).total == 1
        assert await postings(catalog) == await recomputed(catalog)


async def _reshape_round_trip(url: str) -> None:
    """0006 -> 0009 (filter columns, added in the key) -> 0006 (the shape of 0005) -> 0009."""
    await upgrade(url, "0006")
    async with Catalog.from_url(url) as catalog:
        await catalog.add_many([make_track(n, tags=Tags(title=f"Oscar {n}", artist="Oscar", year=1999)) for n in range(3)])
    await upgrade(url)
    async with Catalog.from_url(url) as catalog:
        async with catalog.engine.connect() as conn:
            rows = (await conn.execute(sa.text(
                f"SELECT added, year, duration, format FROM {POSTINGS_TABLE} WHERE term = 'oscar' AND field = 1"  # noqa: S608
            ))).all()
        assert len(rows) == 3 and {(row[1], row[2], row[3]) for row in rows} == {(1999, 181.25, "mp3")}
        assert await postings(catalog) == await recomputed(catalog)
        assert (await catalog.search(SearchRequest(query="oscar year:1999"))).total == 3
        assert (await catalog.search(SearchRequest(query="oscar year:2000.."))).total == 0
    await downgrade(url, "0006")
    async with Catalog.from_url(url) as catalog, catalog.engine.connect() as conn:
        with pytest.raises(sa.exc.DBAPIError):
            await conn.execute(sa.text(f"SELECT added FROM {POSTINGS_TABLE}"))  # noqa: S608
    await upgrade(url)
    async with Catalog.from_url(url) as catalog:
        assert await postings(catalog) == await recomputed(catalog)
        await catalog.add(make_track(7, tags=Tags(title="Oscar Seven")))
        assert (await catalog.search(SearchRequest(query="oscar "))).total == 4


async def test_migration_0009_reshapes_the_postings_and_back_on_sqlite(tmp_path: Path) -> None:
    await _reshape_round_trip(sqlite_catalog_url(tmp_path))


@pytest.mark.postgres
async def test_migration_0009_reshapes_the_postings_and_back_on_postgresql(fresh_pg_url: str) -> None:
    await _reshape_round_trip(fresh_pg_url)


async def test_a_rebuild_before_0009_makes_the_postings_of_this_code(tmp_path: Path) -> None:
    """A migration between 0006 and 0009 that rebuilds the search index (batch mode on SQLite) gets
    the postings this code reads, and 0009 then keeps them."""
    from loist.catalog.search.index import rebuild_search_index

    url = sqlite_catalog_url(tmp_path)
    await upgrade(url, "0006")
    async with Catalog.from_url(url) as catalog:
        await catalog.add_many([make_track(n, tags=Tags(title=f"Papa {n}")) for n in range(2)])
        async with catalog.engine.begin() as conn:
            await conn.run_sync(rebuild_search_index)
            columns = (await conn.execute(sa.text(f"PRAGMA table_info({POSTINGS_TABLE})"))).all()
        assert "added" in {row[1] for row in columns}
    await upgrade(url)
    async with Catalog.from_url(url) as catalog:
        assert await postings(catalog) == await recomputed(catalog)
        assert (await catalog.search(SearchRequest(query="papa format:mp3"))).total == 2
