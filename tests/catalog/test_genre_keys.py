"""Genre keys: PostgreSQL's ``tracks.genre_keys`` (migration 0004) always equals the track's normalised
genres (``track_genres.genre_norm``), on every write path and after the migration's backfill, and
the genre filter and facet give the same answers as before on both engines."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from loist.catalog import Catalog
from loist.catalog.engine import build_engine
from loist.catalog.migrate import current, downgrade, upgrade
from loist.catalog.rows import genre_keys, track_to_row
from loist.catalog.schema import GENRE_KEYS, GENRE_KEYS_INDEX, track_genres, tracks
from loist.catalog.text import genre_rows
from loist.model import AudioInfo, RangeFilter, SearchFilters, SearchRequest, Source, Tags, Track
from tests.catalog.factories import make_track, old_row
from tests.support.pg import sqlite_catalog_url

# genres, year, format: several genres per track, spellings that fold together, none at all.
LIBRARY: list[tuple[list[str], int, str]] = [
    (["Rock", "Électro  Pop"], 1999, "mp3"),
    (["rock", "ROCK", "Jazz"], 2001, "flac"),
    (["Hard Rock"], 1979, "mp3"),
    (["Post-Rock", "électro pop"], 2005, "m4a"),
    ([], 1990, "mp3"),
    (["  ", "Jazz"], 1965, "ogg"),
    (["Metal", "Blues"], 1957, "m4a"),
    (["Blues"], 1958, "m4a"),
]


def _track(n: int, genres: list[str], year: int, fmt: str) -> Track:
    return make_track(
        n,
        tags=Tags(title=f"Song {n}", artist="Artist", genres=genres, year=year),
        audio=AudioInfo(format=fmt, duration_s=200.0, mime_type="audio/x", codec=fmt),
    )


async def keys_in_column(catalog_or_url: Catalog | str) -> dict[uuid.UUID, list[str]]:
    """PostgreSQL: every row's ``genre_keys``."""
    engine = (
        catalog_or_url.engine
        if isinstance(catalog_or_url, Catalog)
        else build_engine(catalog_or_url, null_pool=True)
    )
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.text(f"SELECT id, {GENRE_KEYS} FROM tracks"))  # noqa: S608
            return {row[0]: list(row[1]) for row in rows}
    finally:
        if not isinstance(catalog_or_url, Catalog):
            await engine.dispose()


async def keys_in_child_table(catalog: Catalog) -> dict[uuid.UUID, list[str]]:
    """Every track's ``track_genres.genre_norm`` values, sorted ([] for a track without genres)."""
    async with catalog.engine.connect() as conn:
        ids = (await conn.execute(sa.select(tracks.c.id))).scalars().all()
        pairs = (await conn.execute(sa.select(track_genres.c.track_id, track_genres.c.genre_norm))).all()
    found: dict[uuid.UUID, list[str]] = {track_id: [] for track_id in ids}
    for track_id, norm in pairs:
        found[track_id].append(norm)
    return {track_id: sorted(norms) for track_id, norms in found.items()}


async def assert_keys_consistent(catalog: Catalog) -> dict[uuid.UUID, list[str]]:
    """The column (PostgreSQL) equals the child table; returns the keys per track."""
    child = await keys_in_child_table(catalog)
    if catalog.dialect == "postgresql":
        assert await keys_in_column(catalog) == child
    else:
        async with catalog.engine.connect() as conn:
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("tracks")}
            )
        assert GENRE_KEYS not in columns  # SQLite filters through track_genres
    return child


def test_genre_keys_are_the_sorted_distinct_normalised_genres() -> None:
    assert genre_keys(["Rock", "Électro  Pop", "rock", " ", "ROCK"]) == ["electro pop", "rock"]
    assert genre_keys([]) == []
    assert genre_keys(["Hip-Hop"]) == sorted(norm for _, norm in genre_rows(["Hip-Hop"]))


async def test_add_and_add_many_write_the_keys(catalog: Catalog) -> None:
    first, _ = await catalog.add(_track(1, ["Rock", "Électro  Pop", "rock"], 1999, "mp3"))
    batch = [_track(n, genres, year, fmt) for n, (genres, year, fmt) in enumerate(LIBRARY, start=10)]
    # a duplicate (same sha256) is not created and must not leave keys anywhere
    batch.append(make_track(99, sha256=batch[0].sha256, tags=Tags(genres=["Ghost"])))
    await catalog.add_many(batch)
    keys = await assert_keys_consistent(catalog)
    assert keys[first.id] == ["electro pop", "rock"]
    assert len(keys) == 1 + len(LIBRARY)
    for track in batch[:-1]:
        assert keys[track.id] == genre_keys(track.tags.genres)
    assert "ghost" not in {key for values in keys.values() for key in values}


async def test_a_failure_row_has_no_keys(catalog: Catalog) -> None:
    failed = await catalog.record_failure(
        Source(type="http_url", location="https://x.test/a.mp3"), "FETCH_FAILED", "x"
    )
    keys = await assert_keys_consistent(catalog)
    assert keys == {failed.id: []}


async def test_tag_updates_rewrite_the_keys_and_the_filter_follows(catalog: Catalog) -> None:
    track, _ = await catalog.add(_track(1, ["Rock"], 1999, "mp3"))
    await catalog.add(_track(2, ["Jazz"], 1999, "mp3"))

    async def jazz_ids() -> set[uuid.UUID]:
        result = await catalog.search(SearchRequest(filters=SearchFilters(genre=["JAZZ"]), limit=100))
        return {hit.track.id for hit in result.items}

    assert track.id not in await jazz_ids()
    await catalog.update_tags(track.id, track.tags.model_copy(update={"genres": ["Jázz", "Blues", "blues"]}))
    assert (await assert_keys_consistent(catalog))[track.id] == ["blues", "jazz"]
    assert track.id in await jazz_ids()
    await catalog.update_tags(track.id, track.tags.model_copy(update={"genres": []}))
    assert (await assert_keys_consistent(catalog))[track.id] == []
    assert track.id not in await jazz_ids()
    assert await catalog.update_tags(uuid.uuid4(), Tags(genres=["Rock"])) is None


async def test_delete_and_wipe_leave_no_keys_behind(catalog: Catalog) -> None:
    kept, _ = await catalog.add(_track(1, ["Rock"], 1999, "mp3"))
    gone, _ = await catalog.add(_track(2, ["Rock", "Jazz"], 1999, "mp3"))
    await catalog.delete(gone.id)
    assert await assert_keys_consistent(catalog) == {kept.id: ["rock"]}
    result = await catalog.search(SearchRequest(filters=SearchFilters(genre=["rock", "jazz"])))
    assert [hit.track.id for hit in result.items] == [kept.id]
    await catalog.wipe()
    assert await assert_keys_consistent(catalog) == {}


@pytest.mark.postgres
async def test_writes_that_do_not_know_the_column_still_get_keys(request: pytest.FixtureRequest) -> None:
    """The previous release keeps serving between the migration and the new revision taking traffic:
    its inserts and genre rewrites (no genre_keys) are kept right by the triggers on track_genres."""
    url = request.getfixturevalue("pg_migrated_url")
    async with Catalog.from_url(url) as catalog:
        await catalog.wipe()
        track = _track(1, ["Rock", "Jazz"], 1999, "mp3")
        row = track_to_row(track)
        async with catalog.engine.begin() as conn:  # what the previous release's add() did
            await conn.execute(sa.insert(tracks), [row])
            await conn.execute(sa.insert(track_genres), [
                {"track_id": track.id, "genre": genre, "genre_norm": norm} for genre, norm in genre_rows(["Rock", "Jazz"])
            ])
        assert (await assert_keys_consistent(catalog))[track.id] == ["jazz", "rock"]
        result = await catalog.search(SearchRequest(filters=SearchFilters(genre=["jazz"])))
        assert [hit.track.id for hit in result.items] == [track.id]
        async with catalog.engine.begin() as conn:  # ... and its update_tags(): genres replaced
            await conn.execute(sa.delete(track_genres).where(track_genres.c.track_id == track.id))
            await conn.execute(sa.insert(track_genres), [{"track_id": track.id, "genre": "Blues", "genre_norm": "blues"}])
        assert (await assert_keys_consistent(catalog))[track.id] == ["blues"]
        assert (await catalog.search(SearchRequest(filters=SearchFilters(genre=["jazz"])))).total == 0
        await catalog.wipe()


FILTERS = [
    SearchFilters(genre=["rock"]),
    SearchFilters(genre=["ELECTRO POP"]),
    SearchFilters(genre=["Metal", "Blues"], year=RangeFilter(min=1957, max=1958), format=["m4a"]),
    SearchFilters(genre=["Jazz", "Hard Rock"]),
    SearchFilters(genre=["jazz"], format=["ogg", "flac"]),
    SearchFilters(genre=["rock", "post-rock"], year=RangeFilter(min=2000)),
    SearchFilters(genre=["Nothing Like This"]),
    SearchFilters(genre=["  "]),  # blank: no genre condition at all
]


@pytest.mark.parametrize("sort", ["relevance", "added", "year", "title"])
async def test_the_genre_filter_finds_exactly_the_tracks_with_those_genres(
    catalog: Catalog, sort: str
) -> None:
    batch = [_track(n, genres, year, fmt) for n, (genres, year, fmt) in enumerate(LIBRARY)]
    await catalog.add_many(batch)
    for filters in FILTERS:
        wanted_genres = set(genre_keys(filters.genre))
        expected = {
            track.id
            for track in batch
            if (not wanted_genres or wanted_genres & set(genre_keys(track.tags.genres)))
            and (
                filters.year is None
                or (filters.year.min or 0) <= (track.tags.year or 0) <= (filters.year.max or 9999)
            )
            and (not filters.format or track.audio.format in filters.format)
        }
        for query in ("", "song"):
            pages, cursor = [], None
            while True:
                result = await catalog.search(
                    SearchRequest(query=query, filters=filters, sort=sort, limit=2, cursor=cursor)
                )
                pages.extend(hit.track.id for hit in result.items)
                assert result.total == len(expected), (filters, query)
                cursor = result.next_cursor
                if cursor is None:
                    break
            assert len(pages) == len(set(pages))
            assert set(pages) == expected, (filters, query, sort)


async def test_the_genre_facet_counts_the_normalised_genres_of_the_matches(catalog: Catalog) -> None:
    batch = [_track(n, genres, year, fmt) for n, (genres, year, fmt) in enumerate(LIBRARY)]
    await catalog.add_many(batch)
    for filters in (SearchFilters(), SearchFilters(genre=["Rock", "blues"]), SearchFilters(format=["m4a"])):
        result = await catalog.search(SearchRequest(filters=filters, facets=True))
        matched = [track for track in batch if track.id in {hit.track.id for hit in result.items}]
        expected = Counter(key for track in matched for key in genre_keys(track.tags.genres))
        assert result.facets is not None
        assert result.facets["genre"] == dict(expected)


# --- the migration ------------------------------------------------------------------------------


async def _insert_at_0003(url: str, batch: list[Track]) -> None:
    """Write rows as a catalog at revision 0003 did: ``tracks`` without keys, plus ``track_genres``."""
    engine = build_engine(url, null_pool=True)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(tracks), [old_row(track) for track in batch])
            genre_params = [
                {"track_id": track.id, "genre": genre, "genre_norm": norm}
                for track in batch
                for genre, norm in genre_rows(track.tags.genres)
            ]
            await conn.execute(sa.insert(track_genres), genre_params)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_upgrading_a_library_from_0003_backfills_the_keys(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sqlite_catalog_url(tmp_path) if dialect == "sqlite" else request.getfixturevalue("fresh_pg_url")
    await upgrade(url, "0003")
    batch = [_track(n, genres, year, fmt) for n, (genres, year, fmt) in enumerate(LIBRARY)]
    await _insert_at_0003(url, batch)
    expected = {track.id: genre_keys(track.tags.genres) for track in batch}
    await upgrade(url, "0004")
    assert await current(url) == "0004"
    if dialect == "postgresql":
        assert await keys_in_column(url) == expected
        engine = build_engine(url, null_pool=True)
        try:
            async with engine.begin() as conn:
                index = await conn.execute(
                    sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": GENRE_KEYS_INDEX}
                )
                assert "USING gin (genre_keys)" in index.scalar_one()
                # Re-running on a database whose version row says 0003 (adopted tables) repairs rows
                # whose keys are wrong and leaves the others alone.
                broken = batch[0].id
                await conn.execute(
                    sa.text(f"UPDATE tracks SET {GENRE_KEYS} = '{{wrong}}' WHERE id = :i"), {"i": broken}
                )  # noqa: S608
                await conn.execute(sa.text("UPDATE alembic_version SET version_num = '0003'"))
        finally:
            await engine.dispose()
        await upgrade(url, "0004")
        assert await keys_in_column(url) == expected
        await downgrade(url, "0003")
        engine = build_engine(url, null_pool=True)
        try:
            async with engine.connect() as conn:
                columns = await conn.run_sync(
                    lambda sync: {c["name"] for c in sa.inspect(sync).get_columns("tracks")}
                )
        finally:
            await engine.dispose()
        assert GENRE_KEYS not in columns
    await upgrade(url)
    async with Catalog.from_url(url) as catalog:
        assert (await assert_keys_consistent(catalog)) == expected
        filters = SearchFilters(
            genre=["Metal", "Blues"], year=RangeFilter(min=1957, max=1958), format=["m4a"]
        )
        result = await catalog.search(SearchRequest(filters=filters))
        assert {hit.track.id for hit in result.items} == {batch[6].id, batch[7].id}
        result = await catalog.search(SearchRequest(filters=SearchFilters(genre=["électro pop"])))
        assert {hit.track.id for hit in result.items} == {batch[0].id, batch[3].id}
