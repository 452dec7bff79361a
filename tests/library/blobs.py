"""Looking at a library's blob store from a test: which keys are there."""

from __future__ import annotations

from loist.library.service import Library
from tests.support.gcs import gcs_client


def keys_in_store(lib: Library, *keys: str | None) -> list[bool]:
    return [lib.store.exists(k) for k in keys if k]


def stored_keys(lib: Library) -> set[str]:
    """Every blob key in the library's store, from the store's own listing (the bucket, or the files
    under the blob folder minus the local store's hidden metadata and temporary files)."""
    if lib.store.name == "gcs":
        return {blob.name for blob in gcs_client().list_blobs(lib.settings.gcs_bucket_name)}
    root = lib.settings.blob_dir
    if not root.exists():
        return set()
    found = (path.relative_to(root) for path in root.rglob("*") if path.is_file())
    return {rel.as_posix() for rel in found if not any(part.startswith(".") for part in rel.parts)}


async def referenced_keys(lib: Library) -> set[str]:
    """Every blob key a row of the library's catalogue references (audio and thumbnail, any status)."""
    keys: set[str] = set()
    async for track in lib.iter_tracks(status=None):
        keys.update(k for k in (track.blob_key, track.thumbnail_key) if k)
    return keys
