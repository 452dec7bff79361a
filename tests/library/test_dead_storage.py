"""An ingest against a dead Cloud Storage fails fast with STORAGE_FAILED, and says so.

The storage is dead for real: the google client is pointed (``STORAGE_EMULATOR_HOST``, which it
reads itself) at a loopback listener that never answers, or at a port where nothing listens. The
catalog is a real SQLite database. Bounds are logical: each attempt against a server that never
answers lasts at least ``GCS_TIMEOUT_S``, so a call bounded by a deadline makes at most
``deadline / timeout + 1`` attempts, each one a connection the blackhole counts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from loist.config import Settings
from loist.errors import ErrorCode, StorageFailed
from loist.library.service import Library
from loist.library.synthetic import wav_bytes
from loist.model import TrackStatus
from tests.support.blackhole import Blackhole, refused_url

TIMEOUT_S = 0.2
READ_DEADLINE_S = 0.5

OpenDead = Callable[..., AbstractAsyncContextManager[Library]]


@pytest.fixture
def dead_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> OpenDead:
    """Open a library (SQLite + gcs) whose storage endpoint is ``url``."""

    @asynccontextmanager
    async def open_dead(url: str, **values: Any) -> AsyncIterator[Library]:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp_path / "data",
            storage_backend="gcs",
            gcs_bucket_name="dead-bucket",
            **{"gcs_timeout_s": TIMEOUT_S, "gcs_read_deadline_s": READ_DEADLINE_S, "gcs_breaker_failures": 0} | values,
        )
        lib = await Library.open(settings)
        try:
            yield lib
        finally:
            await lib.close()

    return open_dead


def a_wav(tmp_path: Path, name: str = "song.wav") -> Path:
    path = tmp_path / name
    path.write_bytes(wav_bytes(0.5, marker=name))
    return path


async def failed_rows(lib: Library) -> list[Any]:
    return (await lib.list(status=TrackStatus.FAILED)).items


async def test_an_ingest_against_a_hung_storage_fails_within_its_deadline(
    dead_library: OpenDead, blackhole: Blackhole, tmp_path: Path
) -> None:
    async with dead_library(blackhole.url) as lib:
        with pytest.raises(StorageFailed) as caught:
            await lib.ingest_file(a_wav(tmp_path))
        failures = await failed_rows(lib)
    # The first storage call of an ingest (is the blob there already?) is a read: it is cut by the
    # request timeout and retried only within GCS_READ_DEADLINE_S, instead of minutes.
    assert 1 <= blackhole.connections <= int(READ_DEADLINE_S / TIMEOUT_S) + 1
    assert caught.value.code == ErrorCode.STORAGE_FAILED
    assert "dead-bucket" in caught.value.message and "timed out" in caught.value.message
    assert [(f.error_code, f.source.location) for f in failures] == [("STORAGE_FAILED", str(tmp_path / "song.wav"))]


async def test_an_ingest_against_a_refused_storage_fails_with_a_clear_message(
    dead_library: OpenDead, tmp_path: Path
) -> None:
    async with dead_library(refused_url(), gcs_read_deadline_s=0) as lib:
        with pytest.raises(StorageFailed, match=r"GCS stat of 'audio/.*' in bucket 'dead-bucket' failed: ConnectionError"):
            await lib.ingest_file(a_wav(tmp_path))
        assert lib.storage_pool.busy == 0  # nothing left holding a storage thread


async def test_a_bulk_ingest_against_a_dead_storage_stops_calling_it(
    dead_library: OpenDead, blackhole: Blackhole, tmp_path: Path
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    files = [a_wav(folder, f"{i:02}.wav") for i in range(20)]  # one analysis chunk: files go in order
    async with dead_library(blackhole.url, gcs_read_deadline_s=0, gcs_breaker_failures=2, gcs_breaker_cooldown_s=600) as lib:
        outcomes = [o async for o in lib.ingest_many([str(folder)], concurrency=1)]
        failures = await failed_rows(lib)
    assert len(outcomes) == len(files) and all(not o.ok for o in outcomes)
    assert {o.error.code for o in outcomes if o.error} == {ErrorCode.STORAGE_FAILED}
    # Two files found the storage dead (one attempt each: no read retries here); the breaker then
    # failed the other 18 at once, without a connection.
    assert blackhole.connections == 2
    fast = [o for o in outcomes if o.error and "unreachable: 2 calls in a row failed" in o.error.message]
    assert len(fast) == len(files) - 2
    assert len(failures) == len(files)  # each file has its FAILED record, with the code
