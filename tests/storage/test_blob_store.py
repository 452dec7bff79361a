"""The behavioural suite every blob store must pass: run against the local folder and GCS (emulator)."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

import pytest

from loist.errors import InvalidArgument, NotFound
from loist.storage import CHUNK_SIZE, BlobStore, audio_key, thumbnail_key
from loist.storage.base import MAX_READ_RANGE

SHA = "ab" + "0" * 62
KEY = audio_key(SHA, "mp3")
SMALL = bytes(range(256)) * 4  # 1 KiB with a recognisable pattern


def read(store: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(store.iter_range(key, start, end))


def test_satisfies_the_protocol(blob_store: BlobStore) -> None:
    assert isinstance(blob_store, BlobStore)
    assert blob_store.name in ("local", "gcs")


def test_put_bytes_then_stat(blob_store: BlobStore) -> None:
    info = blob_store.put_bytes(KEY, SMALL, "audio/mpeg")
    assert (info.key, info.size, info.content_type) == (KEY, len(SMALL), "audio/mpeg")
    stat = blob_store.stat(KEY)
    assert (stat.key, stat.size, stat.content_type) == (KEY, len(SMALL), "audio/mpeg")
    assert stat.etag and '"' not in stat.etag
    assert stat.etag == info.etag == blob_store.stat(KEY).etag  # stable for the same blob
    assert stat.updated.tzinfo is not None and stat.updated.utcoffset() == timedelta(0)
    assert blob_store.exists(KEY)


def test_put_file_streams_a_file(blob_store: BlobStore, three_mb_file: tuple[Path, bytes]) -> None:
    path, data = three_mb_file
    info = blob_store.put_file(KEY, path, "audio/flac")
    assert info.size == len(data)
    assert info.content_type == "audio/flac"
    assert blob_store.stat(KEY).size == len(data)
    assert read(blob_store, KEY) == data


def test_content_type_is_kept_and_defaults_to_octet_stream(blob_store: BlobStore, tmp_path: Path) -> None:
    source = tmp_path / "cover.jpg"
    source.write_bytes(b"\xff\xd8\xff" + b"x" * 100)
    blob_store.put_file(thumbnail_key(SHA), source, "image/jpeg")
    assert blob_store.stat(thumbnail_key(SHA)).content_type == "image/jpeg"
    blob_store.put_bytes("misc/unknown.bin", b"?", None)
    assert blob_store.stat("misc/unknown.bin").content_type == "application/octet-stream"


def test_missing_keys_are_not_found(blob_store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        blob_store.stat("audio/zz/missing.mp3")
    assert blob_store.exists("audio/zz/missing.mp3") is False
    with pytest.raises(NotFound):
        blob_store.iter_range("audio/zz/missing.mp3")  # raised eagerly, before iterating
    with pytest.raises(NotFound):
        blob_store.download_to("audio/zz/missing.mp3", tmp_path / "out.bin")


def test_a_folder_is_not_a_blob(blob_store: BlobStore) -> None:
    blob_store.put_bytes("audio/ab/one.mp3", b"1", None)
    with pytest.raises(NotFound):
        blob_store.stat("audio/ab")
    assert blob_store.exists("audio") is False


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 9, SMALL[:10]),  # first bytes
        (0, 0, SMALL[:1]),  # one byte
        (300, 599, SMALL[300:600]),  # middle
        (len(SMALL) - 1, None, SMALL[-1:]),  # last byte
        (len(SMALL) - 1, len(SMALL) - 1, SMALL[-1:]),
        (0, None, SMALL),  # whole
        (1000, 10**9, SMALL[1000:]),  # end past the last byte is clamped, as in HTTP
    ],
)
def test_iter_range_small(blob_store: BlobStore, start: int, end: int | None, expected: bytes) -> None:
    blob_store.put_bytes(KEY, SMALL, "audio/mpeg")
    assert read(blob_store, KEY, start, end) == expected


def test_iter_range_large_file_in_ranges(blob_store: BlobStore, three_mb_file: tuple[Path, bytes]) -> None:
    path, data = three_mb_file
    blob_store.put_file(KEY, path, "audio/flac")
    size = len(data)
    chunks = list(blob_store.iter_range(KEY))
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= CHUNK_SIZE for chunk in chunks)
    # Contiguous ranges with random boundaries reassemble the original...
    cuts = sorted(random.Random(7).sample(range(1, size), 9))
    bounds = list(zip([0, *cuts], [c - 1 for c in cuts] + [size - 1], strict=True))
    assert b"".join(read(blob_store, KEY, s, e) for s, e in bounds) == data
    # ...and ranges straddling chunk and window boundaries are exact.
    for start, end in [(CHUNK_SIZE - 1, CHUNK_SIZE), (4 * CHUNK_SIZE - 3, 4 * CHUNK_SIZE + 2), (1, size - 2)]:
        assert read(blob_store, KEY, start, end) == data[start : end + 1]


@pytest.mark.parametrize(("start", "end"), [(-1, None), (5, 4), (1024, None), (2048, 4096)])
def test_iter_range_rejects_bad_ranges(blob_store: BlobStore, start: int, end: int | None) -> None:
    blob_store.put_bytes(KEY, SMALL, None)
    with pytest.raises(InvalidArgument):
        blob_store.iter_range(KEY, start, end)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (0, 0, SMALL[:1]),
        (300, 599, SMALL[300:600]),
        (len(SMALL) - 1, len(SMALL) - 1, SMALL[-1:]),
        (0, len(SMALL) - 1, SMALL),
        (1000, 10**6, SMALL[1000:]),  # end past the last byte is clamped, as in iter_range
    ],
)
def test_read_range_small(blob_store: BlobStore, start: int, end: int, expected: bytes) -> None:
    blob_store.put_bytes(KEY, SMALL, "audio/mpeg")
    assert bytes(blob_store.read_range(KEY, start, end) or b"-") == expected


def test_read_range_matches_iter_range_on_a_large_blob(
    blob_store: BlobStore, three_mb_file: tuple[Path, bytes]
) -> None:
    path, data = three_mb_file
    blob_store.put_file(KEY, path, None)
    rng = random.Random(11)
    spans = [(0, MAX_READ_RANGE - 1), (len(data) - 5, len(data) + 100), (CHUNK_SIZE - 1, 5 * CHUNK_SIZE)]
    spans += [(s, s + rng.randrange(1, 2 * CHUNK_SIZE)) for s in rng.sample(range(len(data)), 5)]
    for start, end in spans:
        got = blob_store.read_range(KEY, start, end)
        assert got is not None and bytes(got) == data[start : end + 1] == read(blob_store, KEY, start, end)


def test_read_range_nowait_is_the_bytes_or_none(blob_store: BlobStore) -> None:
    """``nowait`` never waits: either the exact bytes (page-cache hit) or None (the caller reads again)."""
    blob_store.put_bytes(KEY, SMALL, None)
    got = blob_store.read_range(KEY, 10, 19, nowait=True)
    assert got is None or bytes(got) == SMALL[10:20]
    with pytest.raises(InvalidArgument):  # the key is still checked
        blob_store.read_range("../x", 0, 0, nowait=True)


@pytest.mark.parametrize(
    ("start", "end"), [(-1, 3), (5, 4), (1024, 1024), (2048, 4096), (0, None), (0, MAX_READ_RANGE)]
)
def test_read_range_rejects_bad_or_unbounded_ranges(blob_store: BlobStore, start: int, end: int | None) -> None:
    blob_store.put_bytes(KEY, SMALL, None)
    with pytest.raises(InvalidArgument):
        blob_store.read_range(KEY, start, end)  # type: ignore[arg-type]


def test_read_range_missing_key_or_folder_is_not_found(blob_store: BlobStore) -> None:
    blob_store.put_bytes("audio/ab/one.mp3", b"1", None)
    for key in ("audio/zz/missing.mp3", "audio/ab"):
        with pytest.raises(NotFound):
            blob_store.read_range(key, 0, 0)


def test_empty_blob(blob_store: BlobStore) -> None:
    info = blob_store.put_bytes("misc/empty.bin", b"", None)
    assert info.size == 0 == blob_store.stat("misc/empty.bin").size
    assert read(blob_store, "misc/empty.bin") == b""
    with pytest.raises(InvalidArgument):
        blob_store.iter_range("misc/empty.bin", 0, 0)
    with pytest.raises(InvalidArgument):
        blob_store.read_range("misc/empty.bin", 0, 0)


def test_download_to(blob_store: BlobStore, three_mb_file: tuple[Path, bytes], tmp_path: Path) -> None:
    path, data = three_mb_file
    blob_store.put_file(KEY, path, None)
    target = tmp_path / "copy.bin"
    blob_store.download_to(KEY, target)
    assert target.read_bytes() == data


def test_delete_is_idempotent(blob_store: BlobStore) -> None:
    blob_store.put_bytes(KEY, SMALL, None)
    blob_store.put_bytes("audio/ab/other.mp3", b"keep me", None)
    blob_store.delete(KEY)
    assert not blob_store.exists(KEY)
    with pytest.raises(NotFound):
        blob_store.stat(KEY)
    blob_store.delete(KEY)  # again: not an error
    blob_store.delete("audio/zz/never-existed.mp3")
    assert read(blob_store, "audio/ab/other.mp3") == b"keep me"  # neighbours untouched


def test_overwrite_same_key(blob_store: BlobStore, tmp_path: Path) -> None:
    blob_store.put_bytes(KEY, b"first version", "audio/mpeg")
    source = tmp_path / "second.bin"
    source.write_bytes(b"second, longer version")
    info = blob_store.put_file(KEY, source, "audio/ogg")
    assert info.size == len(b"second, longer version")
    stat = blob_store.stat(KEY)
    assert (stat.size, stat.content_type) == (info.size, "audio/ogg")
    assert read(blob_store, KEY) == b"second, longer version"


def test_put_file_from_a_missing_source(blob_store: BlobStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        blob_store.put_file(KEY, tmp_path / "nope.mp3", "audio/mpeg")
    assert not blob_store.exists(KEY)


BAD_KEYS = [
    "",
    "../etc/passwd",
    "audio/../../x",
    "/abs/key",
    "a\\b",
    "a//b",
    "a/./b",
    "a/",
    "a b",
    "caf\u00e9.mp3",
    ".hidden",
    "audio/.tmp-123",
    "a?b",
    "a%2fb",
]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_bad_keys_are_rejected_everywhere(blob_store: BlobStore, key: str, tmp_path: Path) -> None:
    source = tmp_path / "x.bin"
    source.write_bytes(b"x")
    calls = [
        lambda: blob_store.put_bytes(key, b"x", None),
        lambda: blob_store.put_file(key, source, None),
        lambda: blob_store.stat(key),
        lambda: blob_store.exists(key),
        lambda: blob_store.iter_range(key),
        lambda: blob_store.read_range(key, 0, 0),
        lambda: blob_store.download_to(key, tmp_path / "out"),
        lambda: blob_store.delete(key),
        lambda: blob_store.signed_url(key, 60),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument):
            call()


def test_signed_url_is_none_or_an_http_url(blob_store: BlobStore) -> None:
    blob_store.put_bytes(KEY, SMALL, None)
    url = blob_store.signed_url(KEY, 900)
    # Neither backend here can sign (a folder; the emulator's anonymous credentials): the app streams.
    assert url is None


def test_ping(blob_store: BlobStore) -> None:
    blob_store.ping()  # must not raise for a usable store


def test_deferred_durability_then_sync(blob_store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "deferred.bin"
    src.write_bytes(b"abc" * 1000)
    blob_store.put_file("audio/dd/deferred.mp3", src, "audio/mpeg", durable=False)
    blob_store.put_bytes("thumbnails/dd/deferred.jpg", b"jpeg", "image/jpeg", durable=False)
    blob_store.sync()
    assert b"".join(blob_store.iter_range("audio/dd/deferred.mp3")) == src.read_bytes()
    assert blob_store.stat("audio/dd/deferred.mp3").content_type == "audio/mpeg"
    assert blob_store.stat("thumbnails/dd/deferred.jpg").size == 4


def test_list_keys_lists_blobs_under_a_prefix(blob_store: BlobStore) -> None:
    keys = [audio_key("ab" + "1" * 62, "mp3"), audio_key("cd" + "2" * 62, "flac"), thumbnail_key("ab" + "1" * 62)]
    for key in keys:
        blob_store.put_bytes(key, SMALL, None)
    listed = {blob.key: blob for blob in blob_store.list_keys("audio/")}
    assert set(listed) == set(keys[:2])
    assert {blob.key for blob in blob_store.list_keys("thumbnails/")} == {keys[2]}
    assert {blob.key for blob in blob_store.list_keys()} == set(keys)
    assert {blob.key for blob in blob_store.list_keys("audio/ab")} == {keys[0]}
    first = listed[keys[0]]
    assert first.size == len(SMALL) and first.updated.utcoffset() == timedelta(0)
    blob_store.delete(keys[0])
    assert {blob.key for blob in blob_store.list_keys("audio/")} == {keys[1]}
    assert list(blob_store.list_keys("nothing/")) == []


def test_a_clean_store_has_no_leftovers(blob_store: BlobStore) -> None:
    blob_store.put_bytes(KEY, SMALL, "audio/mpeg")
    assert list(blob_store.leftovers()) == []
