"""``loist backup`` / ``loist restore`` (loist.library.backup): a backup taken while tracks are being
ingested restores into a new library where every track is playable (blob present, sha256 matches),
on SQLite + local blobs and on PostgreSQL + GCS (restored into PostgreSQL + local blobs)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loist.config import Settings
from loist.errors import InvalidArgument
from loist.library.backup import MANIFEST, backup_library, restore_library
from loist.library.service import Library
from loist.library.synthetic import wav_bytes
from loist.model import SearchRequest, Track
from tests.support.pg import drop_pg_database, make_pg_database
from tests.support.polling import POLL_INTERVAL_S

FILES = 24


@pytest.fixture
def target(library: Library, tmp_path: Path) -> Iterator[Settings]:
    """An empty library of the same catalog kind as ``library``, with local blobs."""
    values: dict[str, object] = {"data_dir": tmp_path / "restored", "_env_file": None}
    url = None
    if library.catalog.dialect == "postgresql":
        url = make_pg_database()
        values["database_url"] = url
    yield Settings(**values)  # type: ignore[arg-type]
    if url:
        drop_pg_database(url)


def _audio_files(folder: Path) -> list[Path]:
    folder.mkdir()
    paths = []
    for n in range(FILES):
        path = folder / f"take_{n:02d}.wav"
        path.write_bytes(wav_bytes(0.5, sample_width=2, noise=True))  # new bytes: a new sha256 each
        paths.append(path)
    return paths


async def _ingest_while_backing_up(library: Library, files: list[Path], dest: Path) -> tuple[int, list[Track]]:
    async def ingest() -> list[Track]:
        return [await library.ingest_file(path) for path in files]

    task = asyncio.create_task(ingest())
    deadline = time.monotonic() + 60
    while await library.catalog.count() < 3:  # a bounded poll for the first tracks, not a guessed sleep
        assert not task.done() and time.monotonic() < deadline
        await asyncio.sleep(POLL_INTERVAL_S)
    assert not task.done()  # the backup is taken while the ingest goes on
    report = await backup_library(library, dest)
    during = task.done()
    ingested = await task
    assert not during or report.tracks < FILES, "the ingest ended before the backup: nothing was proven"
    return report.tracks, ingested


async def test_a_backup_taken_during_ingest_restores_every_track_playable(
    library: Library, target: Settings, tmp_path: Path
) -> None:
    files = _audio_files(tmp_path / "incoming")
    dest = tmp_path / "backup"
    backed_up, ingested = await _ingest_while_backing_up(library, files, dest)
    assert 3 <= backed_up <= FILES
    manifest = json.loads((dest / MANIFEST).read_text())
    assert manifest["dialect"] == library.catalog.dialect and manifest["missing"] == []

    report = await restore_library(target, dest)
    assert (report.tracks, report.dropped) == (backed_up, 0)
    by_id = {track.id: track for track in ingested}
    async with await Library.open(target) as restored:
        tracks = [track async for track in restored.iter_tracks()]
        assert len(tracks) == backed_up
        for track in tracks:  # every restored track is one that was ingested, with its own audio
            assert track == by_id[track.id]
            data = b"".join(restored.store.iter_range(track.blob_key or ""))
            assert hashlib.sha256(data).hexdigest() == track.sha256
            assert data == next(path for path in files if path.name == track.source.original_filename).read_bytes()
        # untagged: found by their file names' words, in the restored search index too
        assert (await restored.search(SearchRequest(query="take", limit=100))).total == backed_up


async def test_backup_and_restore_refuse_to_overwrite(library: Library, target: Settings, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(InvalidArgument, match="not an empty folder"):
        await backup_library(library, taken)
    dest = tmp_path / "backup"
    await library.ingest_file(_audio_files(tmp_path / "one")[0])
    await backup_library(library, dest)
    await restore_library(target, dest)
    with pytest.raises(InvalidArgument, match="already has 1 tracks"):
        await restore_library(target, dest)
    with pytest.raises(InvalidArgument, match="not a Loist backup"):
        await restore_library(target, taken)
