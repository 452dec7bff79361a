"""Blob storage engine: one interface (``base.BlobStore``), a local folder and Google Cloud Storage.

Use :func:`open_blob_store` to get the backend the settings ask for; nothing else in the app should
construct a backend directly. See ``docs/storage.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loist.errors import ConfigInvalid, StorageFailed
from loist.storage.base import CHUNK_SIZE, BlobInfo, BlobStore, audio_key, thumbnail_key

if TYPE_CHECKING:
    from loist.config import Settings

__all__ = ["CHUNK_SIZE", "BlobInfo", "BlobStore", "audio_key", "open_blob_store", "thumbnail_key"]


def open_blob_store(settings: Settings) -> BlobStore:
    """Build the backend named by ``settings.storage_backend``. Cheap: no network I/O here.

    - ``local``: a :class:`~loist.storage.local.LocalBlobStore` in ``settings.blob_dir`` (created);
      its ``ping`` fails when less than ``STORAGE_MIN_FREE_MB`` is free.
    - ``gcs``: a :class:`~loist.storage.gcs.GcsBlobStore` on ``GCS_BUCKET_NAME`` in
      ``GCS_PROJECT_ID``, its calls bounded by ``GCS_TIMEOUT_S`` / ``GCS_READ_DEADLINE_S`` /
      ``GCS_RETRY_DEADLINE_S`` and guarded by a circuit breaker (``GCS_BREAKER_*``). Credentials come from the environment (Cloud Run's service account,
      ``GOOGLE_APPLICATION_CREDENTIALS``, ``gcloud auth application-default login``). When the
      ``STORAGE_EMULATOR_HOST`` environment variable is set (e.g. ``http://127.0.0.1:9023``),
      google-cloud-storage talks to that emulator instead and uses ``AnonymousCredentials``, so no
      Google credentials are needed; signed URLs are then None and the app streams blobs itself.
      Call :meth:`BlobStore.ping` to find out whether the bucket is really reachable.
    """
    if settings.storage_backend == "local":
        from loist.storage.local import LocalBlobStore

        root = settings.blob_dir
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageFailed(f"cannot create the blob folder {root}: {exc.strerror or exc}") from exc
        return LocalBlobStore(root, min_free_bytes=int(settings.storage_min_free_mb * 1024 * 1024))
    if settings.storage_backend == "gcs":
        if not settings.gcs_bucket_name:
            raise ConfigInvalid("STORAGE_BACKEND=gcs needs GCS_BUCKET_NAME")
        from loist.storage.breaker import CircuitBreaker
        from loist.storage.gcs import GcsBlobStore, GcsLimits

        limits = GcsLimits(
            timeout_s=settings.gcs_timeout_s,
            read_deadline_s=settings.gcs_read_deadline_s,
            write_deadline_s=settings.gcs_retry_deadline_s,
        )
        breaker = None
        if settings.gcs_breaker_failures > 0:
            breaker = CircuitBreaker(
                settings.gcs_breaker_failures,
                settings.gcs_breaker_cooldown_s,
                name=f"Cloud Storage bucket {settings.gcs_bucket_name!r}",
            )
        return GcsBlobStore(settings.gcs_bucket_name, settings.gcs_project_id, limits=limits, breaker=breaker)
    raise ConfigInvalid(f"unknown STORAGE_BACKEND {settings.storage_backend!r} (use local or gcs)")
