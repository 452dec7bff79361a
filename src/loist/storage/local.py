"""A blob store in a local folder: the laptop backend (no services needed).

Layout: the blob for key ``audio/ab/<sha>.mp3`` lives at ``<root>/audio/ab/<sha>.mp3``; its content
type lives in a small JSON sidecar at ``<root>/.meta/audio/ab/<sha>.mp3.json``. Keys can never start
a segment with ``.`` (see :mod:`loist.storage.checks`), so neither the sidecars nor the ``.tmp-*``
files used for atomic writes can collide with a blob.

Writes are atomic: data goes to a temp file in the destination folder, is fsynced, then
``os.replace``-d over the final name, so a reader sees the old blob or the new one, never a torn
one, and a failed write leaves nothing behind. Everything is streamed in ``CHUNK_SIZE`` pieces.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from loist.errors import InvalidArgument, NotFound, StorageFailed
from loist.storage.base import CHUNK_SIZE, MAX_READ_RANGE, BlobInfo, Leftover, ListedBlob
from loist.storage.checks import DEFAULT_CONTENT_TYPE, check_range, check_read_range, validate_key
from loist.storage.observed import observed

META_DIR = ".meta"
TEMP_PREFIX = ".tmp-"  # temp files of atomic writes, beside their target


@observed
class LocalBlobStore:
    """Blobs as files under ``root``. ``signed_url`` is None: the app streams them itself."""

    name = "local"

    def __init__(self, root: Path, *, min_free_bytes: int = 0) -> None:
        self.root = Path(root)
        self.min_free_bytes = min_free_bytes

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    # --- paths -----------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        return self.root.joinpath(*validate_key(key).split("/"))

    def _meta_path(self, key: str) -> Path:
        *folders, name = key.split("/")
        return self.root.joinpath(META_DIR, *folders, name + ".json")

    # --- writes ----------------------------------------------------------------------------------
    def put_file(self, key: str, path: Path, content_type: str | None, *, durable: bool = True) -> BlobInfo:
        target = self._path(key)
        source = Path(path)
        try:
            src = source.open("rb")
        except FileNotFoundError:
            raise InvalidArgument(f"source file does not exist: {source}") from None
        except IsADirectoryError:
            raise InvalidArgument(f"source is a directory, not a file: {source}") from None
        except OSError as exc:
            raise StorageFailed(f"cannot read source file {source}: {exc.strerror or exc}") from exc
        with src:
            self._write_atomic(key, target, src, content_type, durable)
        return self.stat(key)

    def put_bytes(self, key: str, data: bytes, content_type: str | None, *, durable: bool = True) -> BlobInfo:
        target = self._path(key)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument("put_bytes needs bytes")
        self._write_atomic(key, target, io.BytesIO(data), content_type, durable)
        return self.stat(key)

    def sync(self) -> None:
        """Make every write made with ``durable=False`` durable: one ``syncfs`` for the whole batch."""
        try:
            _syncfs(self.root)
        except OSError as exc:
            raise StorageFailed(f"cannot flush blobs under {self.root}: {exc.strerror or exc}") from exc

    def _write_atomic(
        self, key: str, target: Path, src: BinaryIO, content_type: str | None, durable: bool = True
    ) -> None:
        """Temp file -> fsync -> content-type sidecar -> rename. Any failure leaves no new file behind.

        With ``durable=False`` the fsyncs are left to one later :meth:`sync` (bulk ingest: one
        flush per batch instead of four per file); the write is still atomic.
        """
        meta = self._meta_path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
        except OSError as exc:
            raise StorageFailed(
                f"cannot write blob {key!r} under {self.root}: {exc.strerror or exc}"
            ) from exc
        tmp = Path(tmp_name)
        renamed = False
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(CHUNK_SIZE):
                    out.write(chunk)
                out.flush()
                if durable:
                    os.fsync(out.fileno())
            # The sidecar goes in just before the rename, so when the blob is visible its type is too.
            self._write_small_atomic(
                meta, json.dumps({"content_type": content_type or DEFAULT_CONTENT_TYPE}).encode(), durable
            )
            os.replace(tmp, target)
            renamed = True
            if durable:
                _fsync_dir(target.parent)
        except BaseException as exc:
            if not renamed:
                tmp.unlink(missing_ok=True)
                if not target.exists():
                    meta.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise StorageFailed(f"cannot write blob {key!r}: {exc.strerror or exc}") from exc
            raise

    def _write_small_atomic(self, target: Path, data: bytes, durable: bool = True) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                if durable:
                    os.fsync(out.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    # --- reads -----------------------------------------------------------------------------------
    def stat(self, key: str) -> BlobInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise NotFound(f"blob {key!r} not found") from None
        except OSError as exc:
            raise StorageFailed(f"cannot stat blob {key!r}: {exc.strerror or exc}") from exc
        if not path.is_file():
            raise NotFound(f"blob {key!r} not found")
        return BlobInfo(
            key=key,
            size=st.st_size,
            content_type=self._content_type(key),
            etag=_etag(key, st.st_size, st.st_mtime_ns),
            updated=datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC),
        )

    def _content_type(self, key: str) -> str:
        try:
            value = json.loads(self._meta_path(key).read_bytes()).get("content_type")
        except (OSError, ValueError, AttributeError):
            return DEFAULT_CONTENT_TYPE
        return value if isinstance(value, str) and value else DEFAULT_CONTENT_TYPE

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Validate and open eagerly (so NotFound / InvalidArgument raise here), then stream lazily."""
        path = self._path(key)
        try:
            handle = path.open("rb")
        except (FileNotFoundError, IsADirectoryError):
            raise NotFound(f"blob {key!r} not found") from None
        except OSError as exc:
            raise StorageFailed(f"cannot open blob {key!r}: {exc.strerror or exc}") from exc
        try:
            size = os.fstat(handle.fileno()).st_size
            first, last = check_range(size, start, end)
            handle.seek(first)
        except BaseException:
            handle.close()
            raise
        return _stream(handle, key, last - first + 1)

    def read_range(self, key: str, start: int, end: int, *, nowait: bool = False) -> bytes | bytearray | None:
        """One ``pread`` into one buffer: no file object, no chunk list, no join.

        Pulling 256 KiB chunks and joining them cost ~25x more system time per MiB than this (each
        fresh multi-MiB allocation is page-faulted and zeroed by the kernel): that was most of the
        cost of a 1 MiB HTTP range. ``nowait`` uses ``preadv2(RWF_NOWAIT)``, which reads only what
        is in the page cache; anything short of the whole range (or a kernel or file system without
        it) is None. Opening the file still happens inline; its directory entry is normally cached.
        """
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"blob {key!r} not found") from None
        except OSError as exc:
            raise StorageFailed(f"cannot open blob {key!r}: {exc.strerror or exc}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise NotFound(f"blob {key!r} not found")
            first, last = check_read_range(st.st_size, start, end, MAX_READ_RANGE)
            if nowait:
                return _pread_cached(fd, first, last - first + 1)
            return _pread(fd, key, first, last - first + 1)
        finally:
            os.close(fd)

    def download_to(self, key: str, path: Path) -> None:
        source = self._path(key)
        try:
            with source.open("rb") as src, Path(path).open("wb") as dst:
                shutil.copyfileobj(src, dst, CHUNK_SIZE)
        except (FileNotFoundError, IsADirectoryError) as exc:
            if not source.is_file():
                raise NotFound(f"blob {key!r} not found") from None
            raise StorageFailed(f"cannot copy blob {key!r} to {path}: {exc.strerror or exc}") from exc
        except OSError as exc:
            raise StorageFailed(f"cannot copy blob {key!r} to {path}: {exc.strerror or exc}") from exc

    # --- delete / misc ---------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
            self._meta_path(key).unlink(missing_ok=True)
        except IsADirectoryError:
            return  # a "folder" key is not a blob: nothing to delete
        except OSError as exc:
            raise StorageFailed(f"cannot delete blob {key!r}: {exc.strerror or exc}") from exc

    def signed_url(self, key: str, ttl_s: int, *, method: str = "GET") -> str | None:
        validate_key(key)
        return None

    # --- listing (loist fsck) --------------------------------------------------------------------
    def list_keys(self, prefix: str = "") -> Iterator[ListedBlob]:
        """Blob files under the folder of ``prefix`` (hidden temp files and sidecars excluded)."""
        folder, _, _ = prefix.rpartition("/")
        start = self.root.joinpath(*validate_key(folder).split("/")) if folder else self.root
        for entry, rel in _walk(start, self.root, hidden=False):
            if rel.startswith(prefix):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue  # deleted since the folder was read
                yield ListedBlob(rel, st.st_size, _mtime(st))

    def leftovers(self) -> Iterator[Leftover]:
        """``.tmp-*`` files anywhere under the folder, and sidecars in ``.meta`` without their blob."""
        for entry, rel in _walk(self.root, self.root, hidden=True):
            if entry.name.startswith(TEMP_PREFIX):
                kind = "temp"
            elif self._orphan_sidecar(rel):
                kind = "sidecar"
            else:
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue  # finished (or removed) since the folder was read
            yield Leftover(rel, kind, st.st_size, _mtime(st))

    def _orphan_sidecar(self, rel: str) -> bool:
        if not rel.startswith(META_DIR + "/") or not rel.endswith(".json"):
            return False
        key = rel[len(META_DIR) + 1 : -len(".json")]
        try:
            return not self._path(key).is_file()
        except InvalidArgument:  # not a sidecar this store wrote
            return False

    def remove_leftover(self, item: Leftover) -> None:
        parts = item.name.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise InvalidArgument(f"not a leftover of this store: {item.name!r}")
        if item.kind == "temp" and parts[-1].startswith(TEMP_PREFIX):
            pass
        elif item.kind == "sidecar" and item.name.startswith(META_DIR + "/"):
            if not self._orphan_sidecar(item.name):
                return  # its blob is there (again): the sidecar belongs to it
        else:
            raise InvalidArgument(f"not a leftover of this store: {item.name!r}")
        try:
            self.root.joinpath(*parts).unlink(missing_ok=True)
        except OSError as exc:
            raise StorageFailed(f"cannot remove {item.name!r}: {exc.strerror or exc}") from exc

    def ping(self) -> None:
        if not self.root.is_dir():
            raise StorageFailed(f"blob folder {self.root} does not exist (or is not a folder)")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageFailed(f"blob folder {self.root} is not writable")
        try:
            fs = os.statvfs(self.root)
        except OSError as exc:
            raise StorageFailed(f"cannot read the free space of {self.root}: {exc.strerror or exc}") from exc
        free = fs.f_bavail * fs.f_frsize  # what an unprivileged writer may still use
        if free < self.min_free_bytes:
            raise StorageFailed(
                f"blob folder {self.root} is full: {free // (1024 * 1024)} MB free, "
                f"less than STORAGE_MIN_FREE_MB={self.min_free_bytes // (1024 * 1024)}",
                details={"reason": "LOW_DISK_SPACE", "free_bytes": free, "min_free_bytes": self.min_free_bytes},
            )


def _walk(folder: Path, root: Path, *, hidden: bool) -> Iterator[tuple[os.DirEntry[str], str]]:
    """Regular files under ``folder`` with their path relative to ``root`` (``/``-separated), one
    folder read at a time; names starting with ``.`` are skipped unless ``hidden``."""
    pending = [folder]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise StorageFailed(f"cannot list {current}: {exc.strerror or exc}") from exc
        for entry in entries:
            if not hidden and entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield entry, Path(entry.path).relative_to(root).as_posix()


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC)


def _stream(handle: BinaryIO, key: str, remaining: int) -> Iterator[bytes]:
    with handle:
        while remaining > 0:
            try:
                chunk = handle.read(min(CHUNK_SIZE, remaining))
            except OSError as exc:
                raise StorageFailed(f"cannot read blob {key!r}: {exc.strerror or exc}") from exc
            if not chunk:
                raise StorageFailed(f"blob {key!r} ended early ({remaining} bytes short)")
            remaining -= len(chunk)
            yield chunk


def _pread(fd: int, key: str, offset: int, length: int) -> bytes:
    try:
        data = os.pread(fd, length, offset)
        if len(data) == length:
            return data
        parts, got = [data], len(data)  # short reads are legal, if rare on local files
        while got < length:
            more = os.pread(fd, length - got, offset + got)
            if not more:
                raise StorageFailed(f"blob {key!r} ended early ({length - got} bytes short)")
            parts.append(more)
            got += len(more)
        return b"".join(parts)
    except OSError as exc:
        raise StorageFailed(f"cannot read blob {key!r}: {exc.strerror or exc}") from exc


def _pread_cached(fd: int, offset: int, length: int) -> bytearray | None:
    """The range if all of it is in the page cache right now, else None (never waits for the disk)."""
    flag = getattr(os, "RWF_NOWAIT", None)
    if flag is None:
        return None
    buffer = bytearray(length)
    try:
        got = os.preadv(fd, [buffer], offset, flag)
    except OSError:  # EAGAIN (not cached), EOPNOTSUPP (file system), ...: the blocking read decides
        return None
    return buffer if got == length else None


def _etag(key: str, size: int, mtime_ns: int) -> str:
    """Strong validator: blobs are immutable, so a rewrite (new mtime) is the only way it changes."""
    return hashlib.sha256(f"{key}\0{size}\0{mtime_ns}".encode()).hexdigest()[:32]


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); harmless no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _syncfs(folder: Path) -> None:
    """Flush the file system holding ``folder`` (Linux ``syncfs``; ``os.sync`` elsewhere)."""
    import ctypes

    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        os.sync()
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        if syncfs(fd) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, os.strerror(errno))
    finally:
        os.close(fd)
