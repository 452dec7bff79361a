"""One fold for genres: the genre filter, the ``genre:`` term and the genre facet agree on letters NFKD
does not split (ø æ ł ß ...), accents and case, on both engines; and migration 0006 rewrites the keys
written with the fold of 0005 (and its downgrade restores them)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from loist.catalog import Catalog
from loist.catalog.engine import build_engine
from loist.catalog.migrate import current, downgrade, upgrade
from loist.catalog.schema import GENRE_KEYS, track_genres, tracks
from loist.catalog.text import normalize_genre
from loist.model import SearchFilters, SearchRequest, Tags
from tests.catalog.factories import make_track, old_row
from tests.support.pg import sqlite_catalog_url

# genre -> other spellings a person may type for it (filter values and genre: terms)
SPELLINGS: dict[str, list[str]] = {
    "Søren": ["Soren", "søren", "SØREN", "soren"],
    "Æther": ["Aether", "æther", "AETHER"],
    "Łódź": ["Lodz", "łódź", "LODZ"],
    "Straße": ["Strasse", "STRASSE", "straße"],
    "Électro": ["Electro", "électro", "ELECTRO"],
    "MiXeD cAsE": ["mixed case", "MIXED CASE", "Mixed  Case"],
}


async def _ids(catalog: Catalog, request: SearchRequest) -> set[uuid.UUID]:
    result = await catalog.search(request.model_copy(update={"limit": 100}))
    assert result.total == len(result.items)
    return {hit.track.id for hit in result.items}


async def test_the_filter_the_genre_term_and_the_facet_agree(catalog: Catalog) -> None:
    owners: dict[str, uuid.UUID] = {}
    for n, genre in enumerate(SPELLINGS):
        track, _ = await catalog.add(make_track(n, tags=Tags(title=f"Song {n}", genres=[genre, "Shared"])))
        owners[genre] = track.id
    await catalog.add(make_track(99, tags=Tags(title="Song 99", genres=["Other"])))
    everything = await catalog.search(SearchRequest(facets=True, limit=100))
    assert everything.facets is not None
    facet = everything.facets["genre"]
    for genre, spellings in SPELLINGS.items():
        key = normalize_genre(genre)
        assert facet[key] == 1, (genre, facet)  # the facet's key is the fold
        for typed in [genre, *spellings, key]:
            by_filter = await _ids(catalog, SearchRequest(filters=SearchFilters(genre=[typed])))
            by_term = await _ids(catalog, SearchRequest(query=f'genre:"{typed}" '))
            assert by_filter == by_term == {owners[genre]}, (genre, typed)
            # the facet of what the filter finds names the same key
            faceted = await catalog.search(SearchRequest(filters=SearchFilters(genre=[typed]), facets=True))
            assert faceted.facets is not None and faceted.facets["genre"] == {key: 1, "shared": 1}
    assert await _ids(catalog, SearchRequest(filters=SearchFilters(genre=["SOREN", "lodz"]))) == {
        owners["Søren"], owners["Łódź"],
    }
    assert facet["shared"] == len(SPELLINGS) and "other" in facet


# --- migration 0006 -------------------------------------------------------------------------------

# genres, the (genre, genre_norm) rows 0005 wrote, the rows 0006 writes
LIBRARY: list[tuple[list[str], set[tuple[str, str]], set[tuple[str, str]]]] = [
    (["Søren", "Soren"], {("Søren", "søren"), ("Soren", "soren")}, {("Søren", "soren")}),  # fold together now
    (["Æther"], {("Æther", "æther")}, {("Æther", "aether")}),
    (["Łódź", "lodz"], {("Łódź", "łodz"), ("lodz", "lodz")}, {("Łódź", "lodz")}),
    (["Straße"], {("Straße", "strasse")}, {("Straße", "strasse")}),
    (["Électro  Pop", "Rock"], {("Électro Pop", "electro pop"), ("Rock", "rock")},
     {("Électro Pop", "electro pop"), ("Rock", "rock")}),
    (["MiXeD cAsE"], {("MiXeD cAsE", "mixed case")}, {("MiXeD cAsE", "mixed case")}),
    (["Dısco", "Œuvre"], {("Dısco", "dısco"), ("Œuvre", "œuvre")}, {("Dısco", "disco"), ("Œuvre", "oeuvre")}),
    ([], set(), set()),
]


async def _rows_and_keys(url: str) -> tuple[dict[uuid.UUID, set[tuple[str, str]]], dict[uuid.UUID, list[str]]]:
    """Every track's genre rows, and (PostgreSQL) its ``genre_keys``."""
    engine = build_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            ids = (await conn.execute(sa.select(tracks.c.id))).scalars().all()
            rows: dict[uuid.UUID, set[tuple[str, str]]] = {track_id: set() for track_id in ids}
            query = sa.select(track_genres.c.track_id, track_genres.c.genre, track_genres.c.genre_norm)
            for track_id, genre, norm in await conn.execute(query):
                rows[track_id].add((genre, norm))
            keys: dict[uuid.UUID, list[str]] = {}
            if engine.dialect.name == "postgresql":
                found = await conn.execute(sa.text(f"SELECT id, {GENRE_KEYS} FROM tracks"))  # noqa: S608
                keys = {track_id: list(values) for track_id, values in found}
                # the key triggers of 0004 (off while 0006 runs) are on again
                enabled = await conn.execute(sa.text(
                    "SELECT tgname, tgenabled::text FROM pg_trigger WHERE tgrelid = 'track_genres'::regclass AND NOT tgisinternal"
                ))
                assert dict(enabled.all()) == {"track_genres_keys_insert": "O", "track_genres_keys_delete": "O"}
    finally:
        await engine.dispose()
    return rows, keys


async def _insert_at_0005(url: str, ids: list[uuid.UUID]) -> None:
    """Write the library as the catalog at 0005 did: the rows and genre rows of the old fold."""
    engine = build_engine(url, null_pool=True)
    try:
        async with engine.begin() as conn:
            for n, (track_id, (genres, old, _)) in enumerate(zip(ids, LIBRARY, strict=True)):
                track = make_track(n, id=track_id, tags=Tags(title=f"Song {n}", genres=genres))
                await conn.execute(sa.insert(tracks), [old_row(track)])
                if old:
                    await conn.execute(sa.insert(track_genres), [
                        {"track_id": track_id, "genre": genre, "genre_norm": norm} for genre, norm in sorted(old)
                    ])
                if engine.dialect.name == "postgresql":
                    await conn.execute(
                        sa.text(f"UPDATE tracks SET {GENRE_KEYS} = :keys WHERE id = :id"),  # noqa: S608
                        {"keys": sorted(norm for _, norm in old), "id": track_id},
                    )
    finally:
        await engine.dispose()


async def _assert_state(url: str, ids: list[uuid.UUID], which: int) -> None:
    rows, keys = await _rows_and_keys(url)
    expected = {track_id: entry[which] for track_id, entry in zip(ids, LIBRARY, strict=True)}
    assert rows == expected
    if keys:
        assert keys == {track_id: sorted(norm for _, norm in pairs) for track_id, pairs in expected.items()}


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_migration_0006_refolds_the_genre_keys_and_its_downgrade_restores_them(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sqlite_catalog_url(tmp_path) if dialect == "sqlite" else request.getfixturevalue("fresh_pg_url")
    await upgrade(url, "0005")
    ids = [uuid.uuid4() for _ in LIBRARY]
    await _insert_at_0005(url, ids)
    await _assert_state(url, ids, 1)
    await upgrade(url, "0006")
    assert await current(url) == "0006"
    await _assert_state(url, ids, 2)
    await downgrade(url, "0005")
    await _assert_state(url, ids, 1)
    await upgrade(url)
    await upgrade(url)  # a no-op at head
    await _assert_state(url, ids, 2)
    async with Catalog.from_url(url) as catalog:  # and "Soren" now finds "Søren" (read by today's catalog)
        found = await catalog.search(SearchRequest(filters=SearchFilters(genre=["Soren", "AETHER"]), facets=True))
        assert {hit.track.id for hit in found.items} == {ids[0], ids[1]}
        assert found.facets is not None and found.facets["genre"] == {"soren": 1, "aether": 1}
