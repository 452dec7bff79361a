"""Several artists, album artists and composers per track, and untitled tracks found by their file
name, on SQLite and PostgreSQL (the ``catalog`` fixture is both); migration 0007 on existing rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from loist.catalog import Catalog
from loist.catalog.migrate import downgrade, upgrade
from loist.model import SearchRequest, Source, Tags
from tests.catalog.factories import insert_old_rows, make_track
from tests.support.pg import sqlite_catalog_url


async def _titles(catalog: Catalog, query: str) -> set[str | None]:
    result = await catalog.search(SearchRequest(query=query))
    return {hit.track.tags.title for hit in result.items}


async def test_every_artist_is_stored_and_found(catalog: Catalog) -> None:
    duet = make_track(1, tags=Tags(title="Duet", artists=["Anna Quill", "Björn Rask"],
                                   album_artists=["Cleo Sand", "Dora Tell"], composers=["Emil Ulm", "Fay Vik"]))
    solo = make_track(2, tags=Tags(title="Solo", artist="Anna Quill"))
    await catalog.add_many([duet, solo])
    stored = await catalog.get(duet.id)
    assert stored is not None
    assert (stored.tags.artists, stored.tags.artist) == (["Anna Quill", "Björn Rask"], "Anna Quill & Björn Rask")
    assert stored.tags.album_artists == ["Cleo Sand", "Dora Tell"]
    assert stored.tags.composers == ["Emil Ulm", "Fay Vik"]
    assert await _titles(catalog, "rask") == {"Duet"}  # the second artist finds the track
    assert await _titles(catalog, "bjorn") == {"Duet"}
    assert await _titles(catalog, "artist:rask") == {"Duet"}
    assert await _titles(catalog, "artist:quill") == {"Duet", "Solo"}
    assert await _titles(catalog, "album:tell") == {"Duet"}  # album artists are searched with the album
    assert await _titles(catalog, "composer:vik") == {"Duet"}
    by_artist = await catalog.search(SearchRequest(sort="artist"))
    assert [hit.track.tags.artist for hit in by_artist.items] == ["Anna Quill", "Anna Quill & Björn Rask"]


async def test_new_names_replace_the_old_ones(catalog: Catalog) -> None:
    track = make_track(3, tags=Tags(title="Trio", artists=["Gus", "Hal"]))
    await catalog.add(track)
    updated = await catalog.update_tags(track.id, Tags(title="Trio", artists=["Ida", "Gus", "Jo"]))
    assert updated is not None and updated.tags.artist == "Ida & Gus & Jo"
    assert await _titles(catalog, "hal") == set()
    assert await _titles(catalog, "jo") == {"Trio"}


async def test_an_untitled_track_is_found_by_its_file_name(catalog: Catalog) -> None:
    source = Source(type="file", location="/music/spoken_intro.wav", original_filename="spoken_intro.wav")
    untitled = make_track(4, tags=Tags(), source=source)
    await catalog.add_many([untitled, make_track(5, tags=Tags(title="Spoken Word"))])
    result = await catalog.search(SearchRequest(query="intro"))
    assert [hit.track.id for hit in result.items] == [untitled.id]
    assert result.items[0].track.tags.title is None  # found by the name, not given it as a title
    assert await _titles(catalog, "spoken") == {None, "Spoken Word"}
    assert await _titles(catalog, "wav") == set()  # the extension is not a word of the name
    # still after an edit that leaves it untitled; a title, once given, replaces the file name's words
    await catalog.update_tags(untitled.id, Tags(artist="Narrator"))
    assert await _titles(catalog, "intro") == {None}
    await catalog.update_tags(untitled.id, Tags(title="Welcome"))
    assert await _titles(catalog, "intro") == set()


@pytest.mark.parametrize("dialect", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_migration_0007_gives_existing_rows_their_name_lists(
    dialect: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = sqlite_catalog_url(tmp_path) if dialect == "sqlite" else request.getfixturevalue("fresh_pg_url")
    await upgrade(url, "0006")
    source = Source(type="file", location="/m/field_recording.flac", original_filename="field_recording.flac")
    tagged = make_track(6, tags=Tags(title="Old", artist="Kai", album_artist="Lu", composer="Mo"))
    untitled = make_track(7, tags=Tags(), source=source)
    await insert_old_rows(url, [tagged, untitled])
    await upgrade(url)
    await upgrade(url)  # a no-op at head
    async with Catalog.from_url(url) as catalog:
        stored = await catalog.get(tagged.id)
        assert stored is not None
        assert (stored.tags.artists, stored.tags.album_artists, stored.tags.composers) == (["Kai"], ["Lu"], ["Mo"])
        assert await _titles(catalog, "recording") == {None}
    await downgrade(url, "0006")
    await upgrade(url)
    async with Catalog.from_url(url) as catalog:
        assert await _titles(catalog, "kai") == {"Old"}
