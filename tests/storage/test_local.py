"""LocalBlobStore specifics: layout, atomic writes, bounded memory, ping, leftovers."""

from __future__ import annotations

import os
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loist.errors import InvalidArgument, StorageFailed
from loist.storage import CHUNK_SIZE, audio_key, open_blob_store
from loist.storage.base import Leftover
from loist.storage.local import LocalBlobStore
from tests.storage.conftest import make_settings

KEY = audio_key("cd" + "1" * 62, ".MP3")


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".tmp-*")]


def test_layout_is_the_key_under_the_root(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_bytes(KEY, b"abc", "audio/mpeg")
    assert KEY == f"audio/cd/{'cd' + '1' * 62}.mp3"
    assert (tmp_path / KEY).read_bytes() == b"abc"
    assert (tmp_path / ".meta" / f"{KEY}.json").is_file()  # the content-type sidecar
    store.delete(KEY)
    assert not (tmp_path / KEY).exists() and not (tmp_path / ".meta" / f"{KEY}.json").exists()


def test_open_blob_store_creates_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "blobs"
    store = open_blob_store(make_settings(storage_backend="local", storage_path=root))
    assert isinstance(store, LocalBlobStore) and store.root == root and root.is_dir()
    store.ping()


def test_open_blob_store_defaults_to_data_dir(tmp_path: Path) -> None:
    store = open_blob_store(make_settings(storage_backend="local", data_dir=tmp_path))
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "blobs"


def test_failed_write_leaves_nothing_and_keeps_the_old_blob(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_bytes(KEY, b"old content", "audio/mpeg")
    source = tmp_path / "new.bin"
    source.write_bytes(os.urandom(3 * CHUNK_SIZE))

    real_fsync = os.fsync

    def disk_full(fd: int) -> None:  # fault injection at the OS boundary: big writes hit a full disk
        if os.fstat(fd).st_size >= CHUNK_SIZE:
            raise OSError(28, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StorageFailed, match="No space left"):
        store.put_file(KEY, source, "application/x-new")
    with pytest.raises(StorageFailed, match="No space left"):
        store.put_bytes("audio/ee/new.mp3", bytes(2 * CHUNK_SIZE), None)
    monkeypatch.undo()

    assert b"".join(store.iter_range(KEY)) == b"old content"  # readers still see the old blob...
    assert store.stat(KEY).content_type == "audio/mpeg"  # ...with its old type
    assert not store.exists("audio/ee/new.mp3")  # a first write that failed leaves no blob,
    assert leftovers(tmp_path) == []  # no temp files,
    assert not (tmp_path / ".meta" / "audio" / "ee" / "new.mp3.json").exists()  # and no sidecar


def test_a_reader_never_sees_a_partial_blob(tmp_path: Path) -> None:
    """While a write is in progress the key shows the previous version, complete."""
    store = LocalBlobStore(tmp_path)
    store.put_bytes(KEY, b"v1" * 1000, None)
    seen: list[int] = []

    class SlowSource:
        """A source that checks what a reader would see between the chunks of the new write."""

        def __init__(self) -> None:
            self.chunks = [b"x" * CHUNK_SIZE] * 3

        def read(self, n: int) -> bytes:
            seen.append(store.stat(KEY).size)
            assert b"".join(store.iter_range(KEY)) == b"v1" * 1000
            return self.chunks.pop() if self.chunks else b""

    store._write_atomic(KEY, tmp_path / KEY, SlowSource(), None)  # type: ignore[arg-type]
    assert seen == [2000] * 4
    assert store.stat(KEY).size == 3 * CHUNK_SIZE


def test_etag_changes_when_a_key_is_rewritten(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    first = store.put_bytes(KEY, b"aaaa", None).etag
    os.utime(tmp_path / KEY, ns=(1, 1))  # an older mtime, so the rewrite is certainly different
    older = store.stat(KEY).etag
    second = store.put_bytes(KEY, b"bbbb", None).etag
    assert len({first, older, second}) == 3


def test_memory_stays_bounded_for_a_large_file(tmp_path: Path) -> None:
    size = 32 * 1024 * 1024
    source = tmp_path / "large.bin"
    with source.open("wb") as out:
        for _ in range(size // (1024 * 1024)):
            out.write(os.urandom(1024 * 1024))
    store = LocalBlobStore(tmp_path / "blobs")
    limit = 4 * CHUNK_SIZE  # 1 MiB, for a 32 MiB file

    tracemalloc.start()
    try:
        store.put_file(KEY, source, "audio/flac")
        _, peak_put = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        total = sum(len(chunk) for chunk in store.iter_range(KEY))
        _, peak_read = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        store.download_to(KEY, tmp_path / "copy.bin")
        _, peak_copy = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size and (tmp_path / "copy.bin").stat().st_size == size
    assert peak_put < limit, peak_put
    assert peak_read < limit, peak_read
    assert peak_copy < limit, peak_copy


def test_ping_fails_for_a_missing_or_non_folder_root(tmp_path: Path) -> None:
    with pytest.raises(StorageFailed, match="does not exist"):
        LocalBlobStore(tmp_path / "missing").ping()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageFailed):
        LocalBlobStore(tmp_path / "file").ping()


def test_ping_tells_a_full_disk_from_a_healthy_one(tmp_path: Path) -> None:
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize  # the real file system's
    healthy = open_blob_store(make_settings(storage_backend="local", storage_path=tmp_path))
    healthy.ping()  # the default threshold (STORAGE_MIN_FREE_MB=100) on a disk with room
    full_mb = free / (1024 * 1024) + 1024  # more than this disk has: it is "full" by the setting
    full = open_blob_store(make_settings(storage_backend="local", storage_path=tmp_path, storage_min_free_mb=full_mb))
    with pytest.raises(StorageFailed, match=r"is full: \d+ MB free, less than STORAGE_MIN_FREE_MB") as caught:
        full.ping()
    assert caught.value.details["min_free_bytes"] > caught.value.details["free_bytes"]


def test_open_blob_store_reports_an_unusable_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StorageFailed, match="cannot create the blob folder"):
        open_blob_store(make_settings(storage_backend="local", storage_path=tmp_path / "file" / "blobs"))


def test_signed_url_is_none(tmp_path: Path) -> None:
    assert LocalBlobStore(tmp_path).signed_url(KEY, 60) is None


def test_deferred_writes_skip_fsync_until_one_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from loist.storage import local

    calls: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(local.os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(local, "_syncfs", lambda folder: calls.append(f"syncfs:{folder}"))
    store = LocalBlobStore(tmp_path / "blobs")
    for i in range(5):
        store.put_bytes(f"audio/aa/{i}.mp3", b"x" * 100, "audio/mpeg", durable=False)
    assert calls == []
    store.sync()
    assert calls == [f"syncfs:{tmp_path / 'blobs'}"]
    store.put_bytes("audio/aa/durable.mp3", b"y", "audio/mpeg")
    assert calls.count("fsync") >= 2  # blob and its content-type sidecar


def test_syncfs_really_runs(tmp_path: Path) -> None:
    from loist.storage.local import _syncfs

    _syncfs(tmp_path)  # raises OSError on failure


def test_read_range_nowait_serves_page_cache_hits(tmp_path: Path) -> None:
    """A blob just written is in the page cache: ``nowait`` reads it (the web layer's inline path)."""
    store = LocalBlobStore(tmp_path)
    data = os.urandom(3 * CHUNK_SIZE)
    store.put_bytes(KEY, data, None)
    got = store.read_range(KEY, CHUNK_SIZE, 3 * CHUNK_SIZE - 1, nowait=True)
    assert got is not None and bytes(got) == data[CHUNK_SIZE:]


def test_read_range_nowait_without_kernel_support_defers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_bytes(KEY, b"abcdef", None)
    monkeypatch.delattr(os, "RWF_NOWAIT", raising=False)
    assert store.read_range(KEY, 0, 2, nowait=True) is None
    assert store.read_range(KEY, 0, 2) == b"abc"  # the blocking read still works


def test_leftovers_are_temp_files_and_sidecars_without_their_blob(tmp_path: Path) -> None:
    """What an interrupted write leaves (kill -9 between the temp file and the rename), found and removed."""
    store = LocalBlobStore(tmp_path)
    kept, lost = audio_key("ab" + "1" * 62, "mp3"), audio_key("cd" + "2" * 62, "mp3")
    store.put_bytes(kept, b"kept", "audio/mpeg")
    store.put_bytes(lost, b"lost", "audio/mpeg")
    tmp_path.joinpath(*lost.split("/")).unlink()  # the blob is gone, its sidecar is not
    partial = tmp_path / "audio" / "ab" / ".tmp-abc123"
    partial.write_bytes(b"half a file")
    found = {item.name: item for item in store.leftovers()}
    assert set(found) == {"audio/ab/.tmp-abc123", f".meta/{lost}.json"}
    assert found["audio/ab/.tmp-abc123"].kind == "temp" and found["audio/ab/.tmp-abc123"].size == 11
    assert found[f".meta/{lost}.json"].kind == "sidecar"
    assert [blob.key for blob in store.list_keys()] == [kept]  # neither is a blob
    for item in found.values():
        store.remove_leftover(item)
    assert list(store.leftovers()) == [] and not partial.exists()
    assert store.stat(kept).content_type == "audio/mpeg"  # a sidecar with its blob stays


def test_remove_leftover_refuses_anything_else(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    store.put_bytes(KEY, b"x", "audio/mpeg")
    for item in (
        Leftover(KEY, "temp", 1, datetime.now(UTC)),
        Leftover("../outside/.tmp-x", "temp", 1, datetime.now(UTC)),
        Leftover(f".meta/{KEY}.json", "temp", 1, datetime.now(UTC)),
    ):
        with pytest.raises(InvalidArgument):
            store.remove_leftover(item)
    store.remove_leftover(Leftover(f".meta/{KEY}.json", "sidecar", 1, datetime.now(UTC)))  # its blob is there
    assert store.exists(KEY) and store.stat(KEY).content_type == "audio/mpeg"
