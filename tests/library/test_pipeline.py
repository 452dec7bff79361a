"""The ingest pipeline (fetch -> analyse -> store -> commit) through the library facade, on both
engine shapes (see conftest.py): what is catalogued, what failures leave behind, bulk ingest.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from loist.config import Settings
from loist.errors import ErrorCode, InvalidArgument, InvalidFormat, NotFound
from loist.ingest.analyze import analyze
from loist.library.service import Library
from loist.model import TrackStatus
from loist.storage.base import audio_key, thumbnail_key
from tests.library.blobs import keys_in_store
from tests.support.audio import AudioFactory
from tests.support.pg import REJECTED, rejecting_title

TAGS = {
    "title": "Hoppípolla",
    "artist": "Sigur Rós",
    "album": "Takk...",
    "album_artist": "Sigur Rós",
    "genre": "Post-Rock",
    "date": "2005",
    "track": "2/11",
    "composer": "Jónsi",
    "comment": "a comment",
}


async def test_ingest_file_catalogues_tags_properties_and_artwork(library: Library, audio_factory: AudioFactory) -> None:
    path = audio_factory("mp3", tags=TAGS, artwork=True, duration=2.0)
    track = await library.ingest_file(path)
    assert track.status == TrackStatus.COMPLETED
    assert track.tags.title == "Hoppípolla"
    assert track.tags.artist == "Sigur Rós"
    assert track.tags.genres == ["Post-Rock"]
    assert track.tags.year == 2005
    assert track.tags.track_number == 2
    assert track.audio.format == "mp3"
    assert track.audio.duration_s == pytest.approx(2.0, abs=0.1)
    assert track.audio.sample_rate_hz == 44100
    assert track.audio.channels == 2
    assert track.artwork.present
    assert track.sha256 is not None and len(track.sha256) == 64
    assert track.blob_key == audio_key(track.sha256, "mp3")
    assert track.thumbnail_key == thumbnail_key(track.sha256)
    assert keys_in_store(library, track.blob_key, track.thumbnail_key) == [True, True]
    assert library.store.stat(track.blob_key).size == path.stat().st_size == track.size_bytes
    # what was written is what is read back (no field lost between layers)
    again = await library.get(track.id)
    assert again == track


async def test_same_bytes_twice_returns_the_existing_track(library: Library, audio_factory: AudioFactory, tmp_path: Path) -> None:
    original = audio_factory("flac", tags={"title": "Twice"})
    copy = tmp_path / "renamed-copy.flac"
    copy.write_bytes(original.read_bytes())
    first = await library.ingest_file(original)
    second = await library.ingest_file(copy)
    assert second.id == first.id
    assert await library.catalog.count() == 1


@pytest.mark.parametrize("kind", ["truncated", "empty", "png_as_mp3", "random"])
async def test_bad_file_leaves_no_blob_and_one_failed_record(library: Library, audio_factory: AudioFactory, kind: str) -> None:
    bad = audio_factory.bad(kind)
    with pytest.raises(InvalidFormat) as info:
        await library.ingest_file(bad)
    assert info.value.code == ErrorCode.INVALID_FORMAT
    page = await library.list(status=None)
    assert [t.status for t in page.items] == [TrackStatus.FAILED]
    failed = page.items[0]
    assert failed.error_code == "INVALID_FORMAT"
    assert failed.source.location == str(bad)
    assert failed.blob_key is None
    assert await library.list() == type(page)(items=[], next_cursor=None)  # COMPLETED only by default
    # retrying counts attempts on the same record
    with pytest.raises(InvalidFormat):
        await library.ingest_file(bad)
    page = await library.list(status=None)
    assert len(page.items) == 1 and page.items[0].attempts == 2


async def test_missing_file_is_not_found(library: Library, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        await library.ingest_file(tmp_path / "nope.mp3")


async def test_failure_then_success_clears_the_failed_record(library: Library, audio_factory: AudioFactory, tmp_path: Path) -> None:
    target = tmp_path / "song.mp3"
    target.write_bytes(b"not audio at all" * 10)
    with pytest.raises(InvalidFormat):
        await library.ingest_file(target)
    target.write_bytes(audio_factory("mp3").read_bytes())
    track = await library.ingest_file(target)
    page = await library.list(status=None)
    assert [t.id for t in page.items] == [track.id]


async def test_catalog_failure_removes_the_new_blob(library: Library, audio_factory: AudioFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from loist.errors import DatabaseFailed

    async def broken_add(tracks, **options):  # the database fails after the blob was stored
        raise DatabaseFailed("simulated outage")

    monkeypatch.setattr(library.catalog, "add_many", broken_add)
    path = audio_factory("ogg", tags={"title": "orphan?"}, artwork=True)
    with pytest.raises(DatabaseFailed):
        await library.ingest_file(path)
    from loist.ingest.analyze import analyze

    sha = analyze(path).sha256
    assert keys_in_store(library, audio_key(sha, "ogg"), thumbnail_key(sha)) == [False, False]


async def test_concurrent_ingest_of_the_same_file_makes_one_row(library: Library, audio_factory: AudioFactory) -> None:
    path = audio_factory("mp3", tags={"title": "race"})
    tracks = await asyncio.gather(*(library.ingest_file(path) for _ in range(4)))
    assert len({t.id for t in tracks}) == 1
    assert await library.catalog.count() == 1
    assert library.store.exists(tracks[0].blob_key)


async def test_bulk_ingest_mixed_folder(library: Library, audio_factory: AudioFactory, tmp_path: Path) -> None:
    folder = tmp_path / "music"
    (folder / "sub").mkdir(parents=True)
    for i, fmt in enumerate(["mp3", "flac", "ogg", "opus", "m4a", "wav", "aiff"]):
        audio_factory.copy(fmt, (folder / "sub" if i % 2 else folder) / f"t{i}.{fmt}", tags={"title": f"T{i}"})
    (folder / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not audio")
    (folder / "notes.txt").write_text("liner notes")
    (folder / ".hidden.mp3").write_bytes(audio_factory("mp3").read_bytes())
    named_bad = audio_factory.bad("png_as_mp3")
    outcomes = [o async for o in library.ingest_many([str(folder), str(named_bad)], concurrency=2)]
    by_status = {}
    for o in outcomes:
        key = "skipped" if o.skipped else ("failed" if o.error else "ok")
        by_status.setdefault(key, []).append(o)
    assert len(by_status["ok"]) == 7
    assert len(by_status["skipped"]) == 2  # cover.jpg and notes.txt; the hidden file is not walked
    assert [o.input for o in by_status["failed"]] == [str(named_bad)]
    assert by_status["failed"][0].error.code == ErrorCode.INVALID_FORMAT
    assert await library.catalog.count(TrackStatus.COMPLETED) == 7
    titles = sorted(o.track.tags.title for o in by_status["ok"])
    assert titles == [f"T{i}" for i in range(7)]
    # the same folder again: nothing new
    again = [o async for o in library.ingest_many([str(folder)])]
    assert sum(o.created for o in again) == 0
    assert await library.catalog.count(TrackStatus.COMPLETED) == 7


async def test_bulk_ingest_uses_the_process_pool(library: Library, audio_factory: AudioFactory, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    base = audio_factory("mp3").read_bytes()
    for i in range(40):  # distinct content: an appended ID3v1-sized tail changes the sha
        (folder / f"{i}.mp3").write_bytes(base + b"TAG" + f"{i:<125}".encode())
    outcomes = [o async for o in library.ingest_many([str(folder)], concurrency=2)]
    assert sum(o.ok and o.created for o in outcomes) == 40
    assert library.pipeline._pool is not None


async def test_bulk_ingest_survives_a_dead_worker(tmp_path: Path, audio_factory: AudioFactory) -> None:
    """A worker process that dies fails only its chunk (INTERNAL); the pool is replaced and the run goes on.

    The stand-in pool answers every submission with BrokenProcessPool, as concurrent.futures does
    for all pending work when a worker is killed (a crash inside a decoder); chunks submitted after
    the failure is seen run in the real process pool that replaced it.
    """
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    class DiesOnce:
        def __init__(self) -> None:
            self.calls = 0

        def submit(self, fn, *args):  # type: ignore[no-untyped-def]
            self.calls += 1
            future: Future = Future()
            future.set_exception(BrokenProcessPool("A child process terminated abruptly"))
            return future

        def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
            pass

    folder = tmp_path / "many"
    folder.mkdir()
    base = audio_factory("mp3").read_bytes()
    for i in range(192):  # 6 chunks of 32; at most 4 are in flight with 2 workers
        (folder / f"{i:03d}.mp3").write_bytes(base + b"TAG" + f"{i:<125}".encode())
    lib = await Library.open(Settings(data_dir=tmp_path / "data", _env_file=None))
    try:
        dying = DiesOnce()
        lib.pipeline._pool = dying  # type: ignore[assignment]
        outcomes = [o async for o in lib.ingest_many([str(folder)], concurrency=2)]
        failed = [o for o in outcomes if o.error]
        assert 1 <= dying.calls < 6
        assert len(failed) == 32 * dying.calls and {o.error.code for o in failed} == {ErrorCode.INTERNAL}
        assert sum(o.created for o in outcomes) == 192 - len(failed)
        assert lib.pipeline._pool is not dying and lib.pipeline._pool is not None
        # nothing half-written: each failed file has a FAILED row and nothing was stored for it
        assert await lib.catalog.count(TrackStatus.FAILED) == len(failed)
    finally:
        await lib.close()


# --- URL ingest through the service (loopback server; ALLOW_PRIVATE_URLS for the test only) ---


async def test_ingest_url_records_source_and_filename(library: Library, audio_factory: AudioFactory, http_server) -> None:
    data = audio_factory("flac", tags={"title": "From the web"}).read_bytes()
    url = http_server.file("/music/song.flac", data, content_type="audio/flac") + "?token=abc"
    stages: list[str] = []
    track = await library.ingest_url(url, progress=lambda stage, done, total: stages.append(stage))
    assert track.source.type == "http_url"
    assert track.source.location == url
    assert track.source.original_filename == "song.flac"
    assert track.tags.title == "From the web"
    assert library.store.exists(track.blob_key)
    assert stages[0] == "fetching" and stages[-3:] == ["reading_tags", "storing", "cataloguing"]


async def test_ingest_url_failure_leaves_no_blob_and_a_failed_record(library: Library, http_server) -> None:
    url = http_server.file("/not-audio.mp3", b"<html>login page</html>" * 50, content_type="audio/mpeg")
    with pytest.raises(InvalidFormat):
        await library.ingest_url(url)
    page = await library.list(status=None)
    assert [(t.status, t.error_code, t.source.location) for t in page.items] == [(TrackStatus.FAILED, "INVALID_FORMAT", url)]
    assert page.items[0].blob_key is None
    assert not library.store.exists(audio_key(hashlib.sha256(b"<html>login page</html>" * 50).hexdigest(), "mp3"))


async def test_ingest_url_size_limit_from_caller_can_only_lower(library: Library, audio_factory: AudioFactory, http_server) -> None:
    from loist.errors import SizeExceeded

    data = audio_factory("wav", duration=2.0).read_bytes()  # ~350 KB
    url = http_server.file("/big.wav", data, content_type="audio/wav")
    with pytest.raises(SizeExceeded):
        await library.ingest_url(url, max_size_mb=0.1)
    with pytest.raises(InvalidArgument):
        await library.ingest_url(url, max_size_mb=0)
    track = await library.ingest_url(url, max_size_mb=10_000)  # above the server's limit: the server's wins
    assert track.size_bytes == len(data)


async def test_private_urls_are_refused_by_default(tmp_path: Path, http_server) -> None:
    from loist.errors import UrlNotAllowed

    lib = await Library.open(Settings(data_dir=tmp_path, _env_file=None))
    try:
        with pytest.raises(UrlNotAllowed):
            await lib.ingest_url(http_server.file("/x.mp3", b"x"))
        failed = (await lib.list(status=None)).items
        assert [t.error_code for t in failed] == ["URL_NOT_ALLOWED"]
    finally:
        await lib.close()


def _keys_of(path: Path) -> list[str]:
    """The content-addressed keys ingesting ``path`` writes: its audio, and its thumbnail if it has artwork."""
    analysis = analyze(path)
    keys = [audio_key(analysis.sha256, analysis.extension)]
    return keys + ([thumbnail_key(analysis.sha256)] if analysis.thumbnail else [])


async def test_a_failed_bulk_batch_deletes_the_blobs_it_created_and_only_those(
    library: Library, audio_factory: AudioFactory, tmp_path: Path
) -> None:
    """What is forced, and how: the database refuses one row of the batch for real (a trigger from
    tests.support.pg.rejecting_title raises inside the INSERT), so the batch's one transaction rolls
    back after the workers stored its blobs. The blobs the batch wrote go; the blobs of a file that
    was catalogued before (same bytes, so the same content-addressed keys) belong to that row and stay.
    """
    folder = tmp_path / "batch"
    folder.mkdir()
    known = audio_factory.copy("mp3", folder / "known.mp3", tags={"title": "Already Here"}, artwork=True)
    catalogued = await library.ingest_file(known)
    fresh = audio_factory.copy("flac", folder / "fresh.flac", tags={"title": "New One"}, artwork=True)
    poison = audio_factory.copy("ogg", folder / "poison.ogg", tags={"title": "Poison Row"})
    created_by_batch = _keys_of(fresh) + _keys_of(poison)
    assert len(created_by_batch) == 3 and catalogued.thumbnail_key

    async with rejecting_title(library.catalog, "Poison Row"):
        outcomes = [o async for o in library.ingest_many([str(folder)])]
    assert len(outcomes) == 3 and all(o.error is not None for o in outcomes)
    assert {o.error.code for o in outcomes if o.error} == {ErrorCode.DATABASE_FAILED}
    assert all(REJECTED in o.error.message for o in outcomes if o.error)  # the trigger's error, nothing else
    assert keys_in_store(library, *created_by_batch) == [False, False, False]
    assert keys_in_store(library, catalogued.blob_key, catalogued.thumbnail_key) == [True, True]
    assert await library.catalog.count() == 1

    again = [o async for o in library.ingest_many([str(folder)])]  # the trigger is gone: the same batch goes in
    assert sorted(o.created for o in again) == [False, True, True]
    assert keys_in_store(library, *created_by_batch) == [True, True, True]
