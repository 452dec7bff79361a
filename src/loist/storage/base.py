"""The blob-store interface every storage backend implements.

Blobs are immutable and content-addressed (see :func:`audio_key`, :func:`thumbnail_key`). All I/O is
streamed: nothing here holds a whole audio file in memory. Methods are synchronous (the GCS client
is); the library runs them in its bounded storage pool (``loist.library.storage_pool``). Every backend failure is raised as
:class:`loist.errors.StorageFailed`; a missing key as :class:`loist.errors.NotFound`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

CHUNK_SIZE = 256 * 1024
MAX_READ_RANGE = 4 * 1024 * 1024  # the most :meth:`BlobStore.read_range` returns in one piece


@dataclass(frozen=True, slots=True)
class BlobInfo:
    key: str
    size: int
    content_type: str | None
    etag: str  # strong validator, quoted form not included
    updated: datetime  # timezone-aware UTC


@dataclass(frozen=True, slots=True)
class ListedBlob:
    """One blob as a listing sees it (:meth:`BlobStore.list_keys`)."""

    key: str
    size: int
    updated: datetime  # timezone-aware UTC: when it was written


@dataclass(frozen=True, slots=True)
class Leftover:
    """A file a backend keeps beside its blobs that belongs to none (:meth:`BlobStore.leftovers`):
    a ``temp`` file of a write that never finished, or a ``sidecar`` whose blob is gone."""

    name: str  # where it is, relative to the store (for messages and for remove_leftover)
    kind: Literal["temp", "sidecar"]
    size: int
    updated: datetime  # timezone-aware UTC


def audio_key(sha256: str, extension: str) -> str:
    """Content-addressed key of an audio blob: ``audio/ab/<sha256>.<ext>``."""
    ext = extension.lstrip(".").lower() or "bin"
    return f"audio/{sha256[:2]}/{sha256}.{ext}"


def thumbnail_key(sha256: str) -> str:
    """Content-addressed key of a track's artwork thumbnail (JPEG), named by the audio's sha256."""
    return f"thumbnails/{sha256[:2]}/{sha256}.jpg"


@runtime_checkable
class BlobStore(Protocol):
    """Put, read (whole or ranged), stat and delete immutable blobs."""

    name: str  # "local" or "gcs"

    def put_file(self, key: str, path: Path, content_type: str | None, *, durable: bool = True) -> BlobInfo:
        """Upload a file, streamed. Atomic: readers never see a partial blob.

        ``durable=False`` lets a bulk writer defer the flush to one :meth:`sync` per batch; the
        blob must not be referenced by a row before that ``sync`` returns.
        """
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str | None, *, durable: bool = True) -> BlobInfo:
        """Upload a small blob (thumbnails)."""
        ...

    def sync(self) -> None:
        """Make every earlier ``durable=False`` write durable (a no-op where uploads are durable)."""
        ...

    def stat(self, key: str) -> BlobInfo:
        """Size, type and validators of a blob; NotFound when absent."""
        ...

    def exists(self, key: str) -> bool: ...

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``start..end`` inclusive (``end=None``: to the end) in chunks."""
        ...

    def read_range(self, key: str, start: int, end: int, *, nowait: bool = False) -> bytes | bytearray | None:
        """Bytes ``start..end`` inclusive in one piece, for small bounded ranges (thumbnails, the
        ranges a player asks for while seeking). ``end`` past the last byte is clamped, like
        :meth:`iter_range`; a range longer than :data:`MAX_READ_RANGE` is InvalidArgument (stream
        those with :meth:`iter_range`). One read is several times cheaper than pulling and joining
        chunks, and that per-request cost bounds how many ranges per second a server can serve.

        ``nowait=True``: return None instead of waiting for a device or the network (bytes not in
        the page cache, a remote backend), so an event loop can serve page-cache hits inline and
        send only misses to a worker thread. Without ``nowait`` the result is never None.
        """
        ...

    def download_to(self, key: str, path: Path) -> None:
        """Copy a blob into a local file, streamed."""
        ...

    def delete(self, key: str) -> None:
        """Delete a blob. Idempotent: deleting a missing key is not an error."""
        ...

    def list_keys(self, prefix: str = "") -> Iterator[ListedBlob]:
        """Every blob whose key starts with ``prefix``, streamed (a page at a time, any order)."""
        ...

    def leftovers(self) -> Iterator[Leftover]:
        """Temp files of interrupted writes and sidecars without their blob (none on backends
        whose writes leave nothing behind)."""
        ...

    def remove_leftover(self, item: Leftover) -> None:
        """Remove one leftover found by :meth:`leftovers` (idempotent; a sidecar whose blob came
        back meanwhile stays)."""
        ...

    def signed_url(self, key: str, ttl_s: int, *, method: str = "GET") -> str | None:
        """A time-limited URL a browser can fetch directly, or None when the backend serves through us."""
        ...

    def ping(self) -> None:
        """Raise StorageFailed when the backend cannot be reached."""
        ...
