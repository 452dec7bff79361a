"""``Library.fsck`` (``loist fsck``): real problems made behind the library's back (blobs deleted from
the store, blobs written straight into it, temp files of interrupted writes), found and repaired on
every engine with every backend."""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from loist.errors import NotFound
from loist.ingest.fetch import DOWNLOAD_TEMP_PREFIX
from loist.library.derived import waveform_key
from loist.library.fsck import MISSING_AUDIO, fsck
from loist.library.jobs import Worker
from loist.library.service import Library
from loist.library.synthetic import SYNTHETIC_BLOB_KEY
from loist.model import Source, TrackStatus
from loist.storage.base import audio_key, thumbnail_key
from tests.library.blobs import stored_keys
from tests.library.interleave import install
from tests.support.audio import AudioFactory

NOW = timedelta(0)  # no grace: everything found counts, however young
ORPHAN_SHA = "ee" + "7" * 62


@pytest.fixture(autouse=True)
def private_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """fsck looks at this machine's temp folder: give it one of its own (other runs share /tmp)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


async def referenced(lib: Library) -> set[str]:
    return {k async for t in lib.iter_tracks(status=None) for k in (t.blob_key, t.thumbnail_key) if k}


async def test_finds_and_repairs_missing_orphan_and_leftover(
    any_library: Library, audio_factory: AudioFactory, private_tmp: Path
) -> None:
    lib = any_library
    lost_audio = await lib.ingest_file(audio_factory("mp3", tags={"title": "Lost audio"}, artwork=True))
    lost_thumb = await lib.ingest_file(audio_factory("flac", tags={"title": "Lost art"}, artwork=True))
    healthy = await lib.ingest_file(audio_factory("ogg", tags={"title": "Fine"}))
    assert await lib.seed_synthetic(3) == 3
    assert lost_audio.blob_key and lost_thumb.thumbnail_key
    lib.store.delete(lost_audio.blob_key)
    lib.store.delete(lost_thumb.thumbnail_key)
    orphans = {audio_key(ORPHAN_SHA, "mp3"), thumbnail_key(ORPHAN_SHA)}
    for key in orphans:
        lib.store.put_bytes(key, b"nobody's", None)
    download = private_tmp / f"{DOWNLOAD_TEMP_PREFIX}abc"  # a download killed mid-way
    download.mkdir()
    (download / "download").write_bytes(b"partial")
    leftovers = 1
    if lib.store.name == "local":  # a write killed between its temp file and the rename
        (lib.settings.blob_dir / "audio" / ".tmp-killed").write_bytes(b"partial")
        leftovers += 1

    report = await fsck(lib, grace=NOW)
    assert (report.missing_blobs, report.orphan_blobs, report.temp_files) == (2, 2, leftovers)
    # rows: 3 ingested + 3 synthetic; blobs: 1 thumbnail + 1 audio + 1 audio + the synthetic one + 2 orphans
    assert report.rows_checked == 6 and report.blobs_checked == 6
    assert report.repaired == 0 and report.remaining == report.problems == 4 + leftovers
    found = {(i["kind"], i.get("key")) for i in report.items}
    assert ("missing_blob", lost_audio.blob_key) in found and ("missing_blob", lost_thumb.thumbnail_key) in found
    assert {("orphan_blob", key) for key in orphans} <= found
    assert ("orphan_blob", SYNTHETIC_BLOB_KEY) not in found  # synthetic tracks reference it

    fixed = await fsck(lib, repair=True, grace=NOW)
    assert fixed.repaired == fixed.problems == 4 + leftovers and fixed.remaining == 0
    broken = await lib.get(lost_audio.id)
    assert broken.status == TrackStatus.FAILED and broken.error_code == "STORAGE_FAILED"
    assert broken.error_message and broken.error_message.startswith(MISSING_AUDIO)
    with pytest.raises(NotFound):
        await lib.stream(lost_audio.id)  # no player that cannot play
    assert (await lib.get(lost_thumb.id)).thumbnail_key is None
    assert (await lib.get(lost_thumb.id)).status == TrackStatus.COMPLETED
    assert (await lib.get(healthy.id)) == healthy
    assert stored_keys(lib) == await referenced(lib) - {lost_audio.blob_key}
    assert not download.exists() and list(lib.store.leftovers()) == []

    clean = await fsck(lib, grace=NOW)
    assert clean.problems == 0 and clean.to_dict()["ok"]

    # Ingesting the same bytes again brings both tracks back whole, under their old ids.
    again = await lib.ingest_file(audio_factory("mp3", tags={"title": "Lost audio"}, artwork=True))
    assert again.id == lost_audio.id and again.status == TrackStatus.COMPLETED and again.error_code is None
    art = await lib.ingest_file(audio_factory("flac", tags={"title": "Lost art"}, artwork=True))
    assert art.id == lost_thumb.id and art.thumbnail_key == lost_thumb.thumbnail_key
    assert (await lib.stream(lost_audio.id)).size == lost_audio.size_bytes
    assert stored_keys(lib) == await referenced(lib)
    assert (await fsck(lib, grace=NOW)).problems == 0


async def run_jobs(lib: Library) -> None:
    worker = Worker(lib.settings, lib.derived)
    while await worker.run_once() is not None:
        pass


async def test_finds_missing_and_orphan_derived_blobs_and_requeues_their_jobs(
    any_library: Library, audio_factory: AudioFactory
) -> None:
    """A finished job whose waveform or rendition was deleted behind the library's back is found,
    and ``--repair`` queues it again (the worker makes the blob again); a derived blob no job
    references is an orphan."""
    lib = any_library
    aiff = await lib.ingest_file(audio_factory("aiff", tags={"title": "Lost rendition"}))
    mp3 = await lib.ingest_file(audio_factory("mp3", tags={"title": "Lost waveform"}))
    await run_jobs(lib)
    rendition = await lib.catalog.jobs.done_key(aiff.id, "rendition")
    waveform = await lib.catalog.jobs.done_key(mp3.id, "waveform")
    assert rendition is not None and waveform is not None
    lost = {rendition[0]: (aiff.id, "rendition"), waveform[0]: (mp3.id, "waveform")}
    for key in lost:
        lib.store.delete(key)
    with pytest.raises(NotFound):
        await lib.stream(aiff.id)  # the player is sent to a rendition that is gone
    orphan = waveform_key(ORPHAN_SHA)
    lib.store.put_bytes(orphan, b"{}", "application/json")

    report = await fsck(lib, grace=NOW)
    assert (report.missing_derived, report.orphan_blobs, report.missing_blobs) == (2, 1, 0)
    assert report.to_dict()["missing_derived"] == 2 and report.remaining == 3 and report.repaired == 0
    found = {i["key"]: i for i in report.items}
    for key, (track_id, kind) in lost.items():
        assert found[key]["kind"] == "missing_derived" and found[key]["action"] is None
        assert (found[key]["track_id"], found[key]["blob"]) == (str(track_id), kind)
    assert found[orphan]["kind"] == "orphan_blob"

    fixed = await fsck(lib, repair=True, grace=NOW)
    assert fixed.repaired == fixed.problems == 3 and fixed.remaining == 0
    assert {i["key"]: i["action"] for i in fixed.items} == {**{key: "requeued" for key in lost}, orphan: "removed"}
    requeued = {(job.track_id, job.kind): job.state for job in await lib.catalog.jobs.list()}
    assert requeued[(aiff.id, "rendition")] == requeued[(mp3.id, "waveform")] == "queued"
    assert (await lib.stream(aiff.id)).key == aiff.blob_key  # the original plays meanwhile
    await run_jobs(lib)
    assert all(lib.store.exists(key) for key in lost)
    assert (await lib.stream(aiff.id)).key == rendition[0]
    again = await fsck(lib, grace=NOW)
    assert again.problems == 0 and again.to_dict()["ok"]


async def test_young_orphans_are_left_alone(library: Library) -> None:
    key = audio_key(ORPHAN_SHA, "wav")
    library.store.put_bytes(key, b"being ingested, perhaps", None)
    report = await fsck(library, repair=True)  # the default grace: an hour
    assert report.orphan_blobs == 0 and report.skipped_young == 1 and report.remaining == 0
    assert library.store.exists(key)
    assert (await fsck(library, repair=True, grace=NOW)).orphan_blobs == 1
    assert not library.store.exists(key)


async def test_the_synthetic_blob_is_an_orphan_only_without_synthetic_tracks(library: Library) -> None:
    await library.ensure_synthetic_blob()
    report = await fsck(library, grace=NOW)
    assert [i["key"] for i in report.items] == [SYNTHETIC_BLOB_KEY]
    await library.seed_synthetic(2)
    assert (await fsck(library, grace=NOW)).problems == 0


async def test_orphan_removal_does_not_take_the_blob_of_an_ingest_in_flight(
    library: Library, audio_factory: AudioFactory
) -> None:
    """An ingest has written its blobs, not its row: fsck --repair --grace 0 removes them as orphans;
    the ingest's commit finds them gone and writes them again."""
    plan = install(library)
    plan.hold("ingest", "stored")
    ingest = plan.start("ingest", library.ingest_file(audio_factory("mp3", tags={"title": "In flight"}, artwork=True)))
    await plan.until(ingest, "stored")
    report = await fsck(library, repair=True, grace=NOW)
    assert report.orphan_blobs == 2 and report.remaining == 0
    track = (await plan.finish())["ingest"]
    assert track.blob_key and library.store.exists(track.blob_key)
    assert stored_keys(library) == await referenced(library)
    assert (await fsck(library, grace=NOW)).problems == 0


async def test_marking_replaces_a_plain_failure_record_of_the_same_source(
    library: Library, audio_factory: AudioFactory
) -> None:
    """A location has one FAILED row: a failure record there gives way to the broken track."""
    track = await library.ingest_file(audio_factory("wav", tags={"title": "Here"}))
    assert track.blob_key and track.source.location
    await library.catalog.record_failure(Source(type="file", location=track.source.location), "INVALID_FORMAT", "x")
    library.store.delete(track.blob_key)
    report = await fsck(library, repair=True, grace=NOW)
    assert report.missing_blobs == 1 and report.remaining == 0
    failed = (await library.list(status=TrackStatus.FAILED)).items
    assert [t.id for t in failed] == [track.id]


async def test_a_negative_grace_is_refused(library: Library) -> None:
    from loist.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        await fsck(library, grace=timedelta(minutes=-1))
