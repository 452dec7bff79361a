"""Search index maintenance: triggers, the rebuild helper after an Alembic batch migration, weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext

from loist.catalog import Catalog
from loist.catalog.migrate import upgrade
from loist.catalog.search.index import rebuild_search_index
from loist.catalog.search.tuning import RANKING
from loist.catalog.text import search_columns
from loist.model import SearchRequest, Tags
from tests.catalog.factories import make_track
from tests.support.pg import sqlite_catalog_url


def _batch_alter_tracks(sync_conn: sa.Connection) -> None:
    """What a future migration does on SQLite: copy ``tracks`` into a new table (triggers are lost)."""
    context = MigrationContext.configure(sync_conn)
    with Operations.context(context):
        op = Operations(context)
        with op.batch_alter_table("tracks", recreate="always") as batch:
            batch.add_column(sa.Column("rating", sa.Integer()))


async def _titles(catalog: Catalog, query: str) -> set[str]:
    result = await catalog.search(SearchRequest(query=query, limit=100))
    return {hit.track.tags.title or "" for hit in result.items}


async def test_batch_migration_drops_triggers_and_rebuild_restores_search(tmp_path: Path) -> None:
    url = sqlite_catalog_url(tmp_path)
    await upgrade(url)
    async with Catalog.from_url(url) as catalog:
        # Delete one track first, so the copied table's rowids no longer match the old ones.
        first, second, third = (make_track(n, tags=Tags(title=t)) for n, t in enumerate(["Alpha", "Bravo", "Charlie"]))
        await catalog.add_many([first, second, third])
        await catalog.delete(first.id)

        async with catalog.engine.begin() as conn:
            await conn.run_sync(_batch_alter_tracks)
        # Without the rebuild, new rows are no longer indexed: the failure mode this guards against.
        await catalog.add(make_track(10, tags=Tags(title="Delta")))
        assert await _titles(catalog, "delta") == set()

        async with catalog.engine.begin() as conn:
            await conn.run_sync(rebuild_search_index)
        assert await _titles(catalog, "bravo") == {"Bravo"}
        assert await _titles(catalog, "charlie") == {"Charlie"}
        assert await _titles(catalog, "delta") == {"Delta"}
        assert await _titles(catalog, "alpha") == set()
        # ...and the triggers are back: writes after the rebuild are indexed again.
        await catalog.add(make_track(11, tags=Tags(title="Echo")))
        await catalog.update_tags(second.id, Tags(title="Foxtrot"))
        assert await _titles(catalog, "echo") == {"Echo"}
        assert await _titles(catalog, "foxtrot") == {"Foxtrot"}
        assert await _titles(catalog, "bravo") == set()
        # the typo vocabulary was rebuilt too
        assert await _titles(catalog, "foxtrott") == {"Foxtrot"}


async def test_rebuild_is_idempotent_on_both_engines(catalog: Catalog) -> None:
    await catalog.add_many([make_track(n, tags=Tags(title=f"Kilo {n}")) for n in range(3)])
    for _ in range(2):
        async with catalog.engine.begin() as conn:
            await conn.run_sync(rebuild_search_index)
    result = await catalog.search(SearchRequest(query="kilo"))
    assert result.total == 3


async def test_migration_backfills_search_columns_of_existing_rows(tmp_path: Path) -> None:
    """A database catalogued before search existed is searchable after upgrading to 0002."""
    url = sqlite_catalog_url(tmp_path)
    await upgrade(url, "0001")
    track = make_track(1, tags=Tags(title="Sigur Rós Live", artist="Sigur Rós", genres=["Post-Rock"]))
    from loist.catalog.engine import build_engine

    engine = build_engine(url, null_pool=True)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO tracks (id, status, attempts, source_type, genres, title, artist, created_at, "
                    "updated_at, artwork_present) VALUES (:id, 'COMPLETED', 1, 'file', :genres, :title, :artist, "
                    "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000', 0)"
                ),
                {"id": track.id.hex, "genres": '["Post-Rock"]', "title": track.tags.title, "artist": track.tags.artist},
            )
    finally:
        await engine.dispose()
    await upgrade(url)
    async with Catalog.from_url(url) as catalog:
        assert await _titles(catalog, "sigur ros") == {"Sigur Rós Live"}
        assert await _titles(catalog, "genre:post") == {"Sigur Rós Live"}


def test_ranking_weights_order_the_fields() -> None:
    weight = {name: field.weight for name, field in RANKING.items()}
    assert weight["title"] == weight["artist"] > weight["album"] > weight["genre"]
    assert weight["album"] > weight["composer"] and weight["album"] > weight["label"]


def test_search_columns_cover_every_ranked_field() -> None:
    columns = search_columns(Tags(title="T", artist="A", album="B", album_artist="C", genres=["G", "H"],
                                  composer="K", label="L"))
    assert set(columns) == {field.column for field in RANKING.values()}
    assert columns["search_album"] == "b c"
    assert columns["search_genre"] == "g h"


@pytest.mark.postgres
async def test_postgresql_vector_weights_each_field(request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("pg_migrated_url")
    async with Catalog.from_url(url) as catalog:
        await catalog.wipe()
        track = make_track(1, tags=Tags(title="Tango", artist="Uniform", album="Victor", genres=["Whiskey"],
                                        composer="Xray", label="Yankee"))
        await catalog.add(track)
        async with catalog.engine.connect() as conn:
            vector = (await conn.execute(sa.text("SELECT search_vector::text FROM tracks"))).scalar_one()
        # D is PostgreSQL's default weight, printed without its letter
        assert vector.split() == ["'tango':1A", "'uniform':2B", "'victor':3C", "'whiskey':4", "'xray':5", "'yankee':6"]
        await catalog.wipe()


async def test_the_index_follows_inserts_tag_updates_and_deletes(catalog: Catalog) -> None:
    """On PostgreSQL a text-only search ranks from the side table ``track_search`` (kept by a trigger,
    rows deleted by cascade); on SQLite from FTS5. Both must follow every write."""
    first, second = make_track(1, tags=Tags(title="Golf Hotel")), make_track(2, tags=Tags(title="Golf India"))
    await catalog.add_many([first, second])
    assert await _titles(catalog, "golf") == {"Golf Hotel", "Golf India"}
    await catalog.update_tags(first.id, Tags(title="Juliett Hotel"))
    assert await _titles(catalog, "golf") == {"Golf India"}
    assert await _titles(catalog, "juliett") == {"Juliett Hotel"}
    await catalog.delete(second.id)
    assert await _titles(catalog, "golf") == set()
    assert await _titles(catalog, "hotel") == {"Juliett Hotel"}
    await catalog.wipe()
    assert await _titles(catalog, "hotel") == set()
