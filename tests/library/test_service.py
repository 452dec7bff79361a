"""The library facade beyond ingest (tags, delete, wipe, read, stream, health, URLs), on both
engine shapes (see conftest.py). Ingest itself is tested in test_pipeline.py.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from loist.config import Settings
from loist.errors import ErrorCode, InvalidArgument, InvalidFormat, LoistError, NotFound
from loist.library.service import Library
from loist.library.synthetic import SYNTHETIC_BLOB_KEY
from loist.model import TrackStatus, parse_track_id
from tests.library.blobs import keys_in_store, stored_keys
from tests.support.audio import AudioFactory


async def test_update_tags_validates_and_persists(library: Library, audio_factory: AudioFactory) -> None:
    track = await library.ingest_file(audio_factory("m4a", tags={"title": "Old"}))
    updated = await library.update_tags(track.id, {"title": "New", "genres": ["Jazz", "Soul"], "year": 1999})
    assert (updated.tags.title, updated.tags.genres, updated.tags.year) == ("New", ["Jazz", "Soul"], 1999)
    assert updated.updated_at >= track.updated_at
    assert (await library.get(track.id)).tags == updated.tags
    for bad in ({"duration_s": 3}, {"year": "soon"}, {"year": 12345}, {"title": "x" * 5000}, {}):
        with pytest.raises(InvalidArgument):
            await library.update_tags(track.id, bad)
    cleared = await library.update_tags(track.id, {"title": None})
    assert cleared.tags.title is None


async def test_delete_removes_row_blob_and_thumbnail(library: Library, audio_factory: AudioFactory) -> None:
    track = await library.ingest_file(audio_factory("flac", tags={"title": "Bye"}, artwork=True))
    assert track.thumbnail_key
    await library.delete(track.id)
    with pytest.raises(NotFound):
        await library.get(track.id)
    assert keys_in_store(library, track.blob_key, track.thumbnail_key) == [False, False]
    with pytest.raises(NotFound):
        await library.delete(track.id)


async def test_delete_keeps_a_blob_other_rows_share(library: Library) -> None:
    await library.seed_synthetic(3, seed=7)
    page = await library.list()
    assert len(page.items) == 3
    shared = page.items[0].blob_key
    assert shared and all(t.blob_key == shared for t in page.items)
    await library.delete(page.items[0].id)
    assert library.store.exists(shared)
    await library.delete(page.items[1].id)
    await library.delete(page.items[2].id)
    assert not library.store.exists(shared)


async def test_unknown_and_malformed_ids_are_not_found(library: Library) -> None:
    for bad in (str(uuid.uuid4()), "not-a-uuid", "", "'; drop table tracks; --"):
        with pytest.raises(NotFound):
            await library.get(bad)
    assert parse_track_id(" 6f1c7a4e-0000-4000-8000-000000000000 ") == uuid.UUID("6f1c7a4e-0000-4000-8000-000000000000")


async def test_stream_and_thumbnail_stat(library: Library, audio_factory: AudioFactory) -> None:
    path = audio_factory("wav", tags={"title": "Raw"})
    track = await library.ingest_file(path)
    info = await library.stream(track.id)
    assert info.size == path.stat().st_size
    assert b"".join(library.iter_blob(info.key, 0, 11)) == path.read_bytes()[:12]
    with pytest.raises(NotFound):
        await library.thumbnail(track.id)  # no artwork


async def test_health_reports_both_parts(library: Library) -> None:
    report = await library.health()
    assert report["ok"] is True
    assert report["database"]["ok"] and report["storage"]["ok"]
    assert report["storage"]["backend"] in ("local", "gcs")


async def test_public_urls_come_from_embed_base_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embed_base_url="https://music.example.com/", _env_file=None)
    lib = await Library.open(settings)
    try:
        tid = uuid.UUID(int=1)
        assert lib.embed_url(tid) == f"https://music.example.com/embed/{tid}"
        assert lib.stream_url(tid) == f"https://music.example.com/audio/{tid}/stream"
        assert lib.oembed_url(tid).startswith("https://music.example.com/oembed?url=https%3A%2F%2Fmusic.example.com%2Fembed%2F")
    finally:
        await lib.close()


async def test_postgres_schema_behind_is_refused(fresh_pg_url: str, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=fresh_pg_url, _env_file=None)
    with pytest.raises(LoistError) as info:
        await Library.open(settings)
    assert info.value.code == ErrorCode.DATABASE_FAILED
    assert "loist db upgrade" in info.value.message


async def test_tag_limits_apply_to_the_edit_not_to_tags_read_from_files(library: Library, audio_factory: AudioFactory) -> None:
    """One set of limits (loist.model.TagsPatch) for every caller; a long comment in the file never
    blocks editing another tag, while a client cannot write one."""
    from loist.model import MAX_COMMENT_TEXT

    long_comment = "liner notes " * 300  # 3,600 characters, written by the file's tagger
    track = await library.ingest_file(audio_factory("flac", tags={"title": "Old", "comment": long_comment}))
    assert len(track.tags.comment or "") > MAX_COMMENT_TEXT
    updated = await library.update_tags(track.id, {"title": "New"})
    assert updated.tags.title == "New" and updated.tags.comment == track.tags.comment
    with pytest.raises(InvalidArgument):
        await library.update_tags(track.id, {"comment": "x" * (MAX_COMMENT_TEXT + 1)})
    with pytest.raises(InvalidArgument):
        await library.update_tags(track.id, {"year": 999})


async def test_wipe_removes_every_row_and_the_blobs_they_reference(library: Library, audio_factory: AudioFactory) -> None:
    track = await library.ingest_file(audio_factory("flac", tags={"title": "Going"}, artwork=True))
    await library.seed_synthetic(2)
    failed = audio_factory.bad("truncated")
    with pytest.raises(InvalidFormat):
        await library.ingest_file(failed)
    assert [t.status async for t in library.iter_tracks(status=None)].count(TrackStatus.FAILED) == 1
    assert await library.wipe() == 4  # one ingested, two synthetic, one FAILED record
    assert await library.catalog.count() == 0
    assert stored_keys(library) == set()
    assert track.thumbnail_key and not library.store.exists(SYNTHETIC_BLOB_KEY)


async def test_wipe_refuses_production(tmp_path: Path) -> None:
    lib = await Library.open(Settings(data_dir=tmp_path / "d", _env_file=None))
    try:
        lib.settings = lib.settings.model_copy(update={"environment": "production"})
        with pytest.raises(InvalidArgument, match="production"):
            await lib.wipe()
    finally:
        await lib.close()
