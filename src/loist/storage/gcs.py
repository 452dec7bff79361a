"""A blob store in a Google Cloud Storage bucket: the cloud backend (Cloud Run + GCS).

Why it looks the way it does:

- Uploads are resumable with an explicit ``UPLOAD_CHUNK_SIZE`` (8 MiB). Without it the client
  buffers up to 100 MiB per upload, which is what takes a small Cloud Run instance down. Files up to
  8 MiB go as one multipart request (the client reads them whole; that is the bound).
- Reads stream in ranged windows of ``RANGE_WINDOW`` bytes, pinned to the object's generation, so a
  stream never holds more than one window and never mixes two versions of an object.
- GCS writes are atomic by nature: an object only appears when its upload is finalised.
- Every call is bounded (:class:`GcsLimits`, from ``GCS_TIMEOUT_S``, ``GCS_READ_DEADLINE_S`` and
  ``GCS_RETRY_DEADLINE_S``): each HTTP request has a timeout, and retries stop starting once the
  call's deadline has passed, so a call gives up after at most its deadline plus one timeout
  instead of the client's default two minutes. Only idempotent calls are retried, which all of
  ours are: reads, listing, deletes (a missing key is not an error) and uploads, which are
  content-addressed and carry ``if_generation_match=0`` (a retried upload that had landed gets 412,
  meaning "already there, same bytes", and never replaces a generation a reader is pinned to).
- A :class:`~loist.storage.breaker.CircuitBreaker` (``GCS_BREAKER_FAILURES`` calls in a row found
  the service unreachable) makes further calls fail at once for ``GCS_BREAKER_COOLDOWN_S``.
- Every Google / transport exception becomes :class:`StorageFailed` (``NotFound`` for a missing
  key), with a message that names the operation, the key and the bucket and never a credential.
- With ``STORAGE_EMULATOR_HOST`` set, google-cloud-storage points at the emulator and uses
  ``AnonymousCredentials`` by itself when no credentials are passed: nothing here special-cases it.
  Anonymous credentials cannot sign, so :meth:`GcsBlobStore.signed_url` returns None there and the
  app streams the blob itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import storage
from google.cloud.storage import exceptions as media_exc
from google.cloud.storage.retry import DEFAULT_RETRY, _should_retry

from loist.errors import InvalidArgument, LoistError, NotFound, StorageFailed
from loist.storage.base import CHUNK_SIZE, MAX_READ_RANGE, BlobInfo, Leftover, ListedBlob
from loist.storage.breaker import CircuitBreaker
from loist.storage.checks import DEFAULT_CONTENT_TYPE, check_range, check_read_range, validate_key
from loist.storage.observed import observed

UPLOAD_CHUNK_SIZE = 32 * CHUNK_SIZE  # 8 MiB: GCS's recommended minimum; must be a multiple of 256 KiB
RANGE_WINDOW = 4 * CHUNK_SIZE  # 1 MiB per ranged GET while streaming
MAX_SIGNED_URL_TTL_S = 7 * 24 * 3600  # the V4 signing limit
SIGNING_HINT = (
    " (signing without a key file uses IAM signBlob: the runtime service account needs "
    "roles/iam.serviceAccountTokenCreator on itself)"
)

_FAILURES: tuple[type[BaseException], ...] = (
    gexc.GoogleAPIError,
    google.auth.exceptions.GoogleAuthError,
    requests.RequestException,
    media_exc.InvalidResponse,
    media_exc.DataCorruption,
    OSError,
)


@dataclass(frozen=True, slots=True)
class GcsLimits:
    """How long a call may take (the settings of the same names; docs/storage.md).

    ``timeout_s`` bounds each HTTP request (the connect, and each wait for bytes). Retries stop
    starting after ``read_deadline_s`` for the calls a request waits on (stat, ranged reads, ping)
    and after ``write_deadline_s`` for uploads, deletes and whole downloads; 0 means no retry. A
    call thus gives up after at most its deadline plus one ``timeout_s``. A resumable upload
    applies them per request and per chunk, so a large file may take longer in total while bytes
    keep flowing.
    """

    timeout_s: float = 5.0
    read_deadline_s: float = 5.0
    write_deadline_s: float = 15.0


@observed
class GcsBlobStore:
    """Blobs as objects in one bucket. The client is created on first use (no work at construction)."""

    name = "gcs"

    def __init__(
        self,
        bucket_name: str,
        project: str | None = None,
        client: storage.Client | None = None,
        *,
        retry: Retry | None = DEFAULT_RETRY,
        limits: GcsLimits | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        if not bucket_name:
            raise InvalidArgument("GCS bucket name is empty (set GCS_BUCKET_NAME)")
        self.bucket_name = bucket_name
        self.project = project
        self.limits = limits or GcsLimits()
        self.breaker = breaker
        self._timeout = self.limits.timeout_s
        self._read_retry = _bounded(retry, self.limits.read_deadline_s)
        self._write_retry = _bounded(retry, self.limits.write_deadline_s)
        self._client = _quiet(client) if client is not None else None
        self._bucket: storage.Bucket | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"GcsBlobStore({self.bucket_name!r})"

    # --- client ----------------------------------------------------------------------------------
    @property
    def client(self) -> storage.Client:
        """The storage client, created once (thread-safe). Without credentials: StorageFailed."""
        with self._lock:
            if self._client is None:
                try:
                    self._client = _quiet(storage.Client(project=self.project))
                except google.auth.exceptions.DefaultCredentialsError:
                    raise StorageFailed(
                        "no Google credentials found for Cloud Storage: run on Cloud Run / GCE, set "
                        "GOOGLE_APPLICATION_CREDENTIALS, or set STORAGE_EMULATOR_HOST for the emulator"
                    ) from None
                except _FAILURES as exc:
                    raise StorageFailed(f"cannot create the Cloud Storage client: {_describe(exc)}") from exc
            return self._client

    @property
    def bucket(self) -> storage.Bucket:
        client = self.client
        if self._bucket is None:
            self._bucket = client.bucket(self.bucket_name)
        return self._bucket

    @contextmanager
    def _guard(
        self,
        op: str,
        key: str | None = None,
        *,
        missing: Callable[[], LoistError] | None = None,
        hint: str = "",
        gated: bool = True,
    ) -> Iterator[None]:
        """Map every backend exception raised inside to our hierarchy, exactly once.

        ``gated`` calls go through the circuit breaker: refused at once while it is open, then
        counted as a success (any answer, a 404 or 403 included) or a failure (the service was
        unreachable through all of the call's retries).
        """
        breaker = self.breaker if gated else None
        if breaker is None:
            with self._mapped(op, key, missing=missing, hint=hint):
                yield
            return
        breaker.enter()
        try:
            with self._mapped(op, key, missing=missing, hint=hint):
                yield
        except StorageFailed as exc:
            if _unreachable(exc.__cause__):
                breaker.failed(_describe(exc.__cause__))
            else:
                breaker.succeeded()
            raise
        except LoistError:
            breaker.succeeded()  # a missing key: the service answered
            raise
        except BaseException:
            breaker.released()  # interrupted, or not the service's doing: tells nothing
            raise
        breaker.succeeded()

    @contextmanager
    def _mapped(
        self, op: str, key: str | None, *, missing: Callable[[], LoistError] | None, hint: str
    ) -> Iterator[None]:
        try:
            yield
        except LoistError:
            raise
        except gexc.NotFound as exc:
            if missing is not None:
                raise missing() from None
            raise StorageFailed(
                f"GCS {op} failed: bucket {self.bucket_name!r} not found", details=self._details(key)
            ) from exc
        except gexc.Forbidden as exc:
            raise StorageFailed(
                f"GCS {op} denied on bucket {self.bucket_name!r}: the service account needs "
                "roles/storage.objectAdmin on the bucket",
                details=self._details(key),
            ) from exc
        except _FAILURES as exc:
            where = f" of {key!r}" if key else ""
            raise StorageFailed(
                f"GCS {op}{where} in bucket {self.bucket_name!r} failed: {_describe(exc)}{hint}",
                details=self._details(key),
            ) from exc

    def _details(self, key: str | None) -> dict[str, Any]:
        return {"bucket": self.bucket_name, **({"key": key} if key else {})}

    def _missing(self, key: str) -> Callable[[], LoistError]:
        return lambda: NotFound(
            f"blob {key!r} not found in bucket {self.bucket_name!r}", details=self._details(key)
        )

    # --- writes ----------------------------------------------------------------------------------
    def put_file(self, key: str, path: Path, content_type: str | None, *, durable: bool = True) -> BlobInfo:
        validate_key(key)
        source = Path(path)
        if not source.is_file():
            raise InvalidArgument(f"source file does not exist or is not a file: {source}")
        blob = self.bucket.blob(key, chunk_size=UPLOAD_CHUNK_SIZE)
        return self._upload(key, blob, blob.upload_from_filename, str(source), content_type)

    def put_bytes(self, key: str, data: bytes, content_type: str | None, *, durable: bool = True) -> BlobInfo:
        validate_key(key)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidArgument("put_bytes needs bytes")
        blob = self.bucket.blob(key)
        return self._upload(key, blob, blob.upload_from_string, bytes(data), content_type)

    def _upload(
        self, key: str, blob: storage.Blob, upload: Callable[..., None], source: Any, content_type: str | None
    ) -> BlobInfo:
        """Create the object only if absent (``if_generation_match=0``), which makes retrying safe.

        412 means the object is there: content-addressed, so it holds these bytes (another writer,
        or an earlier attempt of this call whose answer was lost). Its stat is the result.
        """
        exists = False
        with self._guard("upload", key):
            try:
                upload(
                    source,
                    content_type=content_type or DEFAULT_CONTENT_TYPE,
                    if_generation_match=0,
                    timeout=self._timeout,
                    retry=self._write_retry,
                )
            except gexc.PreconditionFailed:
                exists = True
        return self.stat(key) if exists else _info(key, blob)

    # --- reads -----------------------------------------------------------------------------------
    def _get(self, key: str) -> storage.Blob:
        validate_key(key)
        with self._guard("stat", key):
            blob = self.bucket.get_blob(key, timeout=self._timeout, retry=self._read_retry)
        if blob is None:
            raise self._missing(key)()
        return blob

    def stat(self, key: str) -> BlobInfo:
        return _info(key, self._get(key))

    def exists(self, key: str) -> bool:
        try:
            self._get(key)
        except NotFound:
            return False
        return True

    def iter_range(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stat and validate eagerly (NotFound / InvalidArgument raise here), then stream lazily."""
        blob = self._get(key)
        first, last = check_range(blob.size or 0, start, end)
        return self._stream(blob, key, first, last)

    def _stream(self, blob: storage.Blob, key: str, first: int, last: int) -> Iterator[bytes]:
        position = first
        while position <= last:
            window_end = min(position + RANGE_WINDOW - 1, last)
            # The blob came from get_blob, so it carries its generation: every window reads the
            # same version. A ranged read cannot be checksummed (the hash covers the whole object).
            with self._guard("read", key, missing=self._missing(key)):
                data = blob.download_as_bytes(
                    start=position, end=window_end, checksum=None, timeout=self._timeout, retry=self._read_retry
                )
            expected = window_end - position + 1
            if len(data) != expected:
                raise StorageFailed(
                    f"GCS read of {key!r} returned {len(data)} bytes for a {expected}-byte range",
                    details=self._details(key),
                )
            view = memoryview(data)
            for offset in range(0, len(data), CHUNK_SIZE):
                yield bytes(view[offset : offset + CHUNK_SIZE])
            position = window_end + 1

    def read_range(self, key: str, start: int, end: int, *, nowait: bool = False) -> bytes | bytearray | None:
        """One ranged GET after the stat that pins the generation; ``nowait``: None (it is network I/O)."""
        if nowait:
            validate_key(key)
            return None
        blob = self._get(key)
        first, last = check_read_range(blob.size or 0, start, end, MAX_READ_RANGE)
        with self._guard("read", key, missing=self._missing(key)):
            data = blob.download_as_bytes(
                start=first, end=last, checksum=None, timeout=self._timeout, retry=self._read_retry
            )
        if len(data) != last - first + 1:
            raise StorageFailed(
                f"GCS read of {key!r} returned {len(data)} bytes for a {last - first + 1}-byte range",
                details=self._details(key),
            )
        return data

    def download_to(self, key: str, path: Path) -> None:
        validate_key(key)
        with self._guard("download", key, missing=self._missing(key)):
            # Streams to disk and verifies the whole-object checksum.
            self.bucket.blob(key).download_to_filename(str(path), timeout=self._timeout, retry=self._write_retry)

    # --- listing (loist fsck) --------------------------------------------------------------------
    def list_keys(self, prefix: str = "") -> Iterator[ListedBlob]:
        """Objects whose name starts with ``prefix``, a page (1,000) per request."""
        with self._guard("list"):
            for blob in self.client.list_blobs(
                self.bucket_name, prefix=prefix or None, timeout=self._timeout, retry=self._read_retry
            ):
                yield ListedBlob(blob.name, int(blob.size or 0), _info(blob.name, blob).updated)

    def leftovers(self) -> Iterator[Leftover]:
        """None: an object appears only when its upload is finalised, and there are no sidecars."""
        return iter(())

    def remove_leftover(self, item: Leftover) -> None:
        raise InvalidArgument(f"not a leftover of this store: {item.name!r}")

    # --- delete / misc ---------------------------------------------------------------------------
    def delete(self, key: str) -> None:
        validate_key(key)
        with self._guard("delete", key):
            try:
                self.bucket.delete_blob(key, timeout=self._timeout, retry=self._write_retry)
            except gexc.NotFound:
                return  # idempotent: already gone (or a retried delete that had succeeded)

    def signed_url(self, key: str, ttl_s: int, *, method: str = "GET") -> str | None:
        """A V4 signed URL, or None when the credentials cannot sign (emulator, user credentials).

        A service-account key signs locally. On Cloud Run the credentials are compute-engine
        tokens without a key: we refresh them (which also resolves the "default" account's email)
        and pass ``service_account_email`` + ``access_token`` so the library calls IAM
        ``signBlob``; the runtime service account needs roles/iam.serviceAccountTokenCreator on
        itself for that.
        """
        validate_key(key)
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_SIGNED_URL_TTL_S:
            raise InvalidArgument(f"signed URL ttl must be 1..{MAX_SIGNED_URL_TTL_S} seconds, got {ttl_s!r}")
        client = self.client
        credentials = getattr(client, "_credentials", None)
        if credentials is None or isinstance(credentials, google.auth.credentials.AnonymousCredentials):
            return None
        options: dict[str, Any] = {
            "version": "v4",
            "expiration": timedelta(seconds=ttl_s),
            "method": method.upper(),
        }
        blob = self.bucket.blob(key)
        # Not gated: signing is IAM (or local), not the bucket.
        with self._guard("URL signing", key, hint=SIGNING_HINT, gated=False):
            if isinstance(credentials, google.auth.credentials.Signing):
                return blob.generate_signed_url(**options)
            if not getattr(credentials, "service_account_email", None):
                return None  # end-user credentials cannot sign: the app streams instead
            if (
                not credentials.valid
                or not credentials.token
                or credentials.service_account_email == "default"
            ):
                credentials.refresh(google.auth.transport.requests.Request())
            return blob.generate_signed_url(
                **options,
                service_account_email=credentials.service_account_email,
                access_token=credentials.token,
            )

    def sync(self) -> None:
        """Nothing to do: a finished GCS upload is already durable (``durable`` is accepted and ignored)."""

    def ping(self) -> None:
        """Cheapest check that proves access: list one object (needs storage.objects.list only).

        ``bucket.exists()`` would need storage.buckets.get, which the runtime account need not have.
        Bounded like a read, and not gated by the circuit breaker: a health check reports what it
        finds. (The library also gives it a hard timeout of its own, ``HEALTH_TIMEOUT_S``.)
        """
        missing: Callable[[], LoistError] = lambda: StorageFailed(  # noqa: E731
            f"GCS bucket {self.bucket_name!r} does not exist (check GCS_BUCKET_NAME and the project)",
            details={"bucket": self.bucket_name},
        )
        with self._guard("ping", missing=missing, gated=False):
            blobs = self.client.list_blobs(
                self.bucket_name, max_results=1, timeout=self._timeout, retry=self._read_retry
            )
            list(blobs)


def _info(key: str, blob: storage.Blob) -> BlobInfo:
    updated = blob.updated or blob.time_created or datetime.now(UTC)
    if updated.tzinfo is None:
        updated = updated.replace(tzinfo=UTC)
    etag = blob.md5_hash or (blob.etag or "").strip('"') or f"g{blob.generation}"
    return BlobInfo(
        key=key,
        size=int(blob.size or 0),
        content_type=blob.content_type or DEFAULT_CONTENT_TYPE,
        etag=etag,
        updated=updated.astimezone(UTC),
    )


def _quiet(client: storage.Client) -> storage.Client:
    """Turn off the client's background bucket-metadata fetch (google-cloud-storage >= 3.x).

    It only decorates OpenTelemetry spans, which we do not emit, yet on a client's first call it
    starts a thread that GETs the bucket (needing storage.buckets.get, which the runtime account
    lacks) with the client's default two minutes of retries: against a dead service that is an
    unbounded request outside every deadline here.
    """
    if getattr(client, "_bucket_metadata_cache", None) is not None:
        client._bucket_metadata_cache = None
    return client


def _bounded(retry: Retry | None, deadline_s: float) -> Retry | None:
    """``retry`` with retries starting only within ``deadline_s`` (0: no retry at all)."""
    if retry is None or deadline_s <= 0:
        return None
    return retry.with_timeout(deadline_s)


def _unreachable(exc: BaseException | None) -> bool:
    """Did this failure mean the service did not answer (refused, timed out, 5xx, retries exhausted)?"""
    if isinstance(exc, gexc.RetryError):
        return True
    return isinstance(exc, Exception) and bool(_should_retry(exc))


def _describe(exc: BaseException) -> str:
    """A short, credential-free description: the class and the service's own message.

    A retry that ran out of time says so and names the last failure.
    """
    if isinstance(exc, gexc.RetryError) and exc.cause is not None:
        return f"no answer within the retry deadline ({exc.message}); last error: {_describe(exc.cause)}"
    message = getattr(exc, "message", None) or str(exc) or ""
    message = " ".join(str(message).split())
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
