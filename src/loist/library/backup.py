"""``loist backup DEST`` / ``loist restore SRC``: a consistent copy of a whole library, taken while it runs.

A backup is a folder::

    loist-backup.json     what it holds (format, catalog kind, revision, every blob with its size)
    catalog.sqlite        SQLite: the online backup API's copy      } one of the two
    catalog.pgdump        PostgreSQL: pg_dump, custom format        }
    blobs/<key>           the audio and thumbnails the catalog copy refers to (``--blobs copy``)

Order makes it consistent without stopping anything: the catalog is copied first (one instant of
it), then the blobs its rows refer to. Ingest writes a blob before the row that refers to it, so
every row in the copy has its blob in the store when the copy is taken; a track ingested later is
simply not in the backup. A track *deleted* after the catalog copy may lose its blob before it is
copied: the backup lists it under ``missing`` and the restore drops those rows (they were deleted
anyway), so a restored library never has a track without audio.

On PostgreSQL the blob keys and the track count are read in a repeatable-read transaction whose
snapshot ``pg_dump`` is given (``pg_export_snapshot()``, ``--snapshot``): they are exactly the
dump's. ``--blobs list`` (for a bucket with its own versioning or
retention) records the listing (key and size) instead of copying; a restore then checks that every
listed blob is in the target store.

A restore goes into an empty library (a new data folder or database), loads the catalog copy,
migrates it to this release's schema, puts the blobs into the configured store (local or GCS) and
checks every completed track: its audio blob is present, its size and its sha256 match the row.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from loist.catalog import Catalog
from loist.catalog.migrate import current_engine
from loist.catalog.schema import tracks
from loist.catalog.snapshot import check_tool_version, pg_dump, pg_restore, sqlite_copy, sqlite_file
from loist.config import Settings
from loist.errors import InvalidArgument, NotFound, StorageFailed
from loist.library.service import Library
from loist.model import TrackStatus
from loist.storage import open_blob_store
from loist.storage.base import BlobStore

FORMAT_NAME = "loist-backup"
FORMAT_VERSION = 1
MANIFEST = "loist-backup.json"
CATALOG_FILES = {"sqlite": "catalog.sqlite", "postgresql": "catalog.pgdump"}
BLOBS_DIR = "blobs"
HASH_CHUNK = 1024 * 1024

BlobsMode = Literal["copy", "list"]


@dataclass
class BackupReport:
    path: str
    dialect: str
    revision: str | None
    tracks: int
    blobs: int
    blob_bytes: int
    blobs_mode: str
    missing: list[str] = field(default_factory=list)  # blobs deleted while the backup ran
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RestoreReport:
    path: str
    dialect: str
    tracks: int  # completed tracks restored (every one checked playable)
    blobs: int  # blobs put into the store
    dropped: int  # tracks deleted while the backup was taken (no blob to restore)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- backup --------------------------------------------------------------------------------------


async def backup_library(library: Library, dest: Path, *, blobs: BlobsMode = "copy") -> BackupReport:
    """Copy ``library`` into the new folder ``dest`` while it keeps serving."""
    started = time.monotonic()
    dest = _new_folder(dest)
    catalog = library.catalog
    dialect = catalog.dialect
    revision = await current_engine(catalog.engine)
    target = dest / CATALOG_FILES[dialect]
    if dialect == "sqlite":
        await asyncio.to_thread(sqlite_copy, sqlite_file(library.settings.sqlalchemy_url()), target)
        keys, count = await asyncio.to_thread(_sqlite_contents, target)
    else:
        await _check_pg_tools(catalog, "pg_dump")
        keys, count = await _pg_dump_with_contents(catalog, library.settings.sqlalchemy_url(), target)
    listed, missing = await asyncio.to_thread(_save_blobs, library.store, keys, dest / BLOBS_DIR, blobs)
    report = BackupReport(
        path=str(dest), dialect=dialect, revision=revision, tracks=count, blobs=len(listed),
        blob_bytes=sum(size for _, size in listed), blobs_mode=blobs, missing=missing,
    )
    manifest = {
        "format": FORMAT_NAME, "version": FORMAT_VERSION, "created_at": datetime.now(UTC).isoformat(),
        "dialect": dialect, "revision": revision, "catalog": target.name, "blobs_mode": blobs,
        "blobs": [{"key": key, "size": size} for key, size in listed], "missing": missing,
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _new_folder(dest: Path) -> Path:
    dest = Path(dest).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise InvalidArgument(f"{dest} already exists and is not an empty folder: back up into a new folder")
    try:
        (dest / BLOBS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidArgument(f"cannot create the backup folder {dest}: {exc.strerror or exc}") from None
    return dest.resolve()


async def _check_pg_tools(catalog: Catalog, tool: str) -> None:
    async with catalog.engine.connect() as conn:
        version = int(await conn.scalar(sa.text("SHOW server_version_num")))
    await asyncio.to_thread(check_tool_version, tool, version)


_KEYS = sa.union(
    sa.select(tracks.c.blob_key.label("key")).where(tracks.c.blob_key.is_not(None)),
    sa.select(tracks.c.thumbnail_key.label("key")).where(tracks.c.thumbnail_key.is_not(None)),
)


_COMPLETED = sa.select(sa.func.count()).select_from(tracks).where(tracks.c.status == TrackStatus.COMPLETED.value)


def _sqlite_contents(path: Path) -> tuple[list[str], int]:
    """The blob keys the SQLite catalog copy refers to, and its completed tracks."""
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return sorted(conn.execute(_KEYS).scalars()), int(conn.scalar(_COMPLETED) or 0)
    finally:
        engine.dispose()


async def _pg_dump_with_contents(catalog: Catalog, url: str, target: Path) -> tuple[list[str], int]:
    """``pg_dump`` of one exported snapshot, and the blob keys and completed tracks of that same snapshot."""
    async with catalog.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        async with conn.begin():
            snapshot = str(await conn.scalar(sa.text("SELECT pg_export_snapshot()")))
            keys = sorted((await conn.execute(_KEYS)).scalars())
            count = int(await conn.scalar(_COMPLETED) or 0)
            await asyncio.to_thread(pg_dump, url, target, snapshot=snapshot)  # while the snapshot is held
    return keys, count


def _save_blobs(store: BlobStore, keys: list[str], folder: Path, mode: BlobsMode) -> tuple[list[tuple[str, int]], list[str]]:
    """Copy (or only list) every blob in ``keys``; the ones gone meanwhile are returned as missing."""
    listed: list[tuple[str, int]] = []
    missing: list[str] = []
    for key in keys:
        try:
            size = store.stat(key).size
            if mode == "copy":
                target = _inside(folder, key)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                store.download_to(key, partial)
                partial.replace(target)
        except NotFound:
            missing.append(key)
            continue
        listed.append((key, size))
    return listed, missing


def _inside(folder: Path, key: str) -> Path:
    """Where blob ``key`` lives in a backup folder (refusing keys that would leave it)."""
    target = (folder / key).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise InvalidArgument(f"blob key {key!r} leaves the backup folder")
    return target


# --- restore -------------------------------------------------------------------------------------


def read_manifest(src: Path) -> dict[str, Any]:
    path = Path(src).expanduser() / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidArgument(f"{src} is not a Loist backup (no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read {path}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise InvalidArgument(f"{path} is not a Loist backup manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise InvalidArgument(f"{path} has backup format {manifest.get('version')}; this release reads {FORMAT_VERSION}")
    return manifest


async def restore_library(settings: Settings, src: Path) -> RestoreReport:
    """Restore the backup folder ``src`` into the empty library ``settings`` describe."""
    started = time.monotonic()
    src = Path(src).expanduser().resolve()
    manifest = read_manifest(src)
    dialect = settings.database_dialect
    if manifest["dialect"] != dialect:
        raise InvalidArgument(
            f"this backup holds a {manifest['dialect']} catalog and the target is {dialect}: restore it into the "
            f"same kind of catalog (then `loist export`/`loist import` to move between them)"
        )
    await _require_empty(settings)
    catalog_copy = src / str(manifest["catalog"])
    if dialect == "sqlite":
        target = sqlite_file(settings.sqlalchemy_url())
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(sqlite_copy, catalog_copy, target)
    else:
        async with Catalog.from_url(settings.sqlalchemy_url()) as catalog:
            await _check_pg_tools(catalog, "pg_restore")
        await asyncio.to_thread(pg_restore, settings.sqlalchemy_url(), catalog_copy)
    async with await Library.open(settings, migrate=True) as library:
        types = {t.blob_key: t.audio.mime_type async for t in library.iter_tracks(status=None) if t.blob_key}
        put = await asyncio.to_thread(_put_blobs, library.store, src / BLOBS_DIR, manifest, types)
        dropped = await _drop_unplayable(library)
        checked = await check_playable(library)
    return RestoreReport(path=str(src), dialect=dialect, tracks=checked, blobs=put, dropped=dropped,
                         seconds=round(time.monotonic() - started, 3))


async def _require_empty(settings: Settings) -> None:
    """Refuse to restore over tracks (the target must be a new data folder or database)."""
    if settings.database_dialect == "sqlite" and not sqlite_file(settings.sqlalchemy_url()).exists():
        store = await asyncio.to_thread(open_blob_store, settings)
        if next(iter(store.list_keys()), None) is not None:
            raise InvalidArgument(f"the blob store at {settings.blob_dir} is not empty: restore into a new library")
        return
    async with Catalog.from_url(settings.sqlalchemy_url()) as catalog:
        async with catalog.engine.connect() as conn:
            has_tracks = await conn.run_sync(lambda sync: sa.inspect(sync).has_table("tracks"))
        found = await catalog.count(status=None) if has_tracks else 0
    if found:
        raise InvalidArgument(
            f"the target library already has {found} tracks: restore into an empty library "
            "(a new LOIST_DATA_DIR, or a new database)"
        )


def _put_blobs(store: BlobStore, folder: Path, manifest: dict[str, Any], types: dict[str, str | None]) -> int:
    """Put the backup's blobs into ``store`` (listed-only backups: check they are there)."""
    put = 0
    for entry in manifest.get("blobs", []):
        key, size = str(entry["key"]), int(entry["size"])
        if manifest.get("blobs_mode") == "list":
            if not store.exists(key):
                raise StorageFailed(f"blob {key} listed in the backup is not in the target store")
            continue
        source = _inside(folder, key)
        if not source.is_file() or source.stat().st_size != size:
            raise StorageFailed(f"blob {key} is missing or damaged in the backup ({source})")
        # One flush for the whole restore (the rows are checked only after it), not one per blob.
        content_type = "image/jpeg" if key.startswith("thumbnails/") else types.get(key)
        store.put_file(key, source, content_type, durable=False)
        put += 1
    store.sync()
    return put


async def _drop_unplayable(library: Library) -> int:
    """Delete the restored rows whose audio the backup does not hold (deleted while it was taken)."""
    dropped = 0
    async for track in library.iter_tracks(status=None):
        if track.blob_key and not await asyncio.to_thread(library.store.exists, track.blob_key):
            await library.catalog.delete(track.id)
            dropped += 1
    return dropped


async def check_playable(library: Library) -> int:
    """Check every completed track's audio (present, size and sha256 as catalogued); return how many."""
    checked = 0
    async for track in library.iter_tracks():
        if not track.blob_key:
            raise StorageFailed(f"track {track.id} is COMPLETED but has no audio blob")
        digest, size = await asyncio.to_thread(_digest, library.store, track.blob_key)
        if track.size_bytes is not None and size != track.size_bytes:
            raise StorageFailed(f"track {track.id}: blob {track.blob_key} has {size} bytes, catalogued {track.size_bytes}")
        if track.sha256 is not None and digest != track.sha256:
            raise StorageFailed(f"track {track.id}: blob {track.blob_key} does not match its sha256")
        checked += 1
    return checked


def _digest(store: BlobStore, key: str) -> tuple[str, int]:
    hasher, size = hashlib.sha256(), 0
    for chunk in store.iter_range(key):
        hasher.update(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size
