"""The catalog: tracks in SQLite or PostgreSQL behind one dialect-neutral API.

Everything here is SQLAlchemy Core on the tables of :mod:`loist.catalog.schema`. Content is unique
by sha256 (``ON CONFLICT DO NOTHING`` then select, so concurrent ingests of the same bytes yield one
row), a source location has at most one FAILED row (an upsert counting ``attempts``), and
``track_genres`` is rewritten in the same transaction as every write to ``tracks`` (on PostgreSQL the
same normalised genres also go into ``tracks.genre_keys``, in the statement that writes the row). Every
driver failure leaves as :class:`DatabaseFailed` with the password masked.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loist.catalog import blobs, revisions, sqlite_bulk
from loist.catalog.cursor import decode_cursor, encode_cursor, invalid_cursor
from loist.catalog.engine import DEFAULT_WRITE_TIMEOUT_S, build_engine, transaction
from loist.catalog.errors import database_failed
from loist.catalog.jobs import JobTable, enqueue
from loist.catalog.rows import LIST_TAG_FIELDS, genre_keys, row_to_track, track_to_row, utc
from loist.catalog.schema import (
    GENRE_KEYS,
    TRACK_COLUMNS,
    jobs,
    pg_tracks,
    track_columns,
    track_genres,
    tracks,
)
from loist.catalog.text import genre_rows, search_columns
from loist.errors import DatabaseFailed, InvalidArgument, LoistError
from loist.model import (
    TAG_FIELDS,
    SearchRequest,
    SearchResult,
    Source,
    Tags,
    Track,
    TrackPage,
    TrackStatus,
    new_track_id,
)
from loist.telemetry import metrics

MAX_PAGE_SIZE = 1000
_WRITE_ACTIONS = frozenset({"insert", "update", "delete"})  # the ``_tx`` actions that write
# Bound parameters per statement stay far below SQLite's and asyncpg's limits (32766 / 32767).
IN_CHUNK = 500

GENRE_ROWS_PER_INSERT = 2000  # x 3 parameters: well under every driver's limit


def _now() -> datetime:
    return datetime.now(UTC)


# --- listing cursors (the codec: loist.catalog.cursor) -------------------------------------------


def _list_cursor(created_at: datetime, track_id: uuid.UUID) -> str:
    return encode_cursor({"c": utc(created_at).isoformat(), "i": str(track_id)})


def _list_position(cursor: str) -> tuple[datetime, uuid.UUID]:
    data = decode_cursor(cursor)
    try:
        return utc(datetime.fromisoformat(data["c"])), uuid.UUID(data["i"])
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise invalid_cursor() from exc


# --- the catalog ------------------------------------------------------------------------------


class Catalog:
    """Tracks, stored in SQLite (embedded default) or PostgreSQL (Cloud SQL)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self.jobs = JobTable(self._tx)  # the durable job queue (loist.catalog.jobs)

    @classmethod
    def from_url(
        cls, url: str, *, pool_size: int = 5, max_overflow: int | None = None,
        write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S,
    ) -> Catalog:
        """A catalog on ``url`` (no I/O yet; a bad URL raises :class:`ConfigInvalid`).
        ``write_timeout_s``: how long a write waits for SQLite's write lock (``SQLITE_WRITE_TIMEOUT_S``)."""
        return cls(build_engine(url, pool_size=pool_size, max_overflow=max_overflow, write_timeout_s=write_timeout_s))

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    @property
    def dialect(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self._engine.dialect.name == "sqlite" else "postgresql"

    async def close(self) -> None:
        await self._engine.dispose()

    async def __aenter__(self) -> Catalog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- plumbing ------------------------------------------------------------------------------

    @asynccontextmanager
    async def _tx(self, action: str = "query") -> AsyncIterator[AsyncConnection]:
        """One transaction; every driver failure inside it becomes :class:`DatabaseFailed`.
        Inserts, updates and deletes take SQLite's write lock up front (``engine.transaction``);
        inside :meth:`locked`, the transaction holding the blob locks is used (it commits with them).
        """
        try:
            locked = blobs.held(self._engine)
            if locked is not None:
                yield locked
                return
            async with transaction(self._engine, write=action in _WRITE_ACTIONS) as conn:
                yield conn
        except LoistError:
            raise
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise database_failed(exc, self._engine.url, action=action) from None

    def _insert(self) -> Any:
        if self.dialect == "postgresql":  # each dialect's package only where it is used (start-up)
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        return insert(tracks)

    # --- lifecycle -----------------------------------------------------------------------------

    async def ping(self) -> None:
        """Round-trip to the database; :class:`DatabaseFailed` when it is unreachable."""
        async with self._tx("ping") as conn:
            await conn.execute(sa.text("SELECT 1"))

    async def ensure_schema(self) -> None:
        """Upgrade the database to the newest migration (a no-op when it is current: then read
        from one small table, without importing Alembic; see :mod:`loist.catalog.revisions`)."""
        with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):  # the upgrade reports these
            if await revisions.at_head(self._engine):
                return
        from loist.catalog.migrate import upgrade_engine

        await upgrade_engine(self._engine)

    async def check_schema(self) -> None:
        """Refuse a database that is not at this code's migration head (server databases are
        migrated by a deploy step, ``loist db upgrade``, not by every instance that starts)."""
        try:
            now = await revisions.current(self._engine)
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise database_failed(exc, self._engine.url, action="schema check") from None
        head = revisions.head()
        if head is None:  # a history this reader cannot follow: Alembic's answer
            from loist.catalog.migrate import heads

            head = heads()[0]
        if now != head:
            state = f"at revision {now}" if now else "empty (no migrations applied)"
            raise DatabaseFailed(
                f"the database schema is {state} but this version of loist needs revision {head}: "
                "run `loist db upgrade`",
                details={"current": now, "head": head},
            )

    # --- writes --------------------------------------------------------------------------------

    async def add(self, track: Track) -> tuple[Track, bool]:
        """Insert ``track``; if its sha256 is catalogued already, return ``(existing, False)``."""
        return (await self.add_many([track]))[0]

    async def add_many(
        self, tracks_in: Sequence[Track], *, derive: Callable[[Track], Sequence[str]] | None = None
    ) -> list[tuple[Track, bool]]:
        """Insert several tracks in one transaction, each deduplicated by sha256 like :meth:`add`.

        Within the batch the first track with a given sha256 wins; later ones are reported as
        ``(first, False)``. One ``executemany`` for the rows and one for their genres. ``derive``
        names the jobs to queue for each created track, in the same transaction (``catalog.jobs``).
        """
        if not tracks_in:
            return []
        rows = [track_to_row(track) for track in tracks_in]
        async with self._tx("insert") as conn:
            if self.dialect == "sqlite":
                created_ids = await sqlite_bulk.insert_rows(conn, rows)
            else:
                # insertmanyvalues: multi-row INSERTs, RETURNING the ids of the rows that went in.
                # genre_keys (PostgreSQL only) goes in with the row: no second write per track.
                from sqlalchemy.dialects.postgresql import insert

                statement = (
                    insert(pg_tracks)
                    .on_conflict_do_nothing(index_elements=[pg_tracks.c.sha256])
                    .returning(pg_tracks.c.id)
                )
                params = [{**row, GENRE_KEYS: genre_keys(row["genres"])} for row in rows]
                created_ids = set((await conn.execute(statement, params)).scalars().all())
                await self._write_genres(
                    conn,
                    [(row["id"], row["genres"]) for row in rows if row["id"] in created_ids],
                    replace=False,
                )
            if derive is not None:
                created_tracks = [track for track in tracks_in if track.id in created_ids]
                await enqueue(conn, [(t.id, kind) for t in created_tracks for kind in derive(t)], _now())
            dupes = list({row["sha256"] for row in rows if row["id"] not in created_ids and row["sha256"]})
            owners: dict[str, Track] = {}
            for chunk in _chunks(dupes, IN_CHUNK):
                result = await conn.execute(sa.select(*track_columns).where(tracks.c.sha256.in_(chunk)))
                owners.update({row["sha256"]: row_to_track(row) for row in result.mappings()})
        out: list[tuple[Track, bool]] = []
        for track, row in zip(tracks_in, rows, strict=True):
            if row["id"] in created_ids:
                created_ids.discard(row["id"])  # the same Track twice in a batch is created once
                out.append((_normalized(track), True))
            else:
                out.append((owners[row["sha256"]], False))
        return out

    async def record_failure(self, source: Source, code: str, message: str) -> Track:
        """Record a failed ingest: one FAILED row per location, ``attempts`` counting the tries."""
        now = _now()
        track = Track(
            id=new_track_id(),
            status=TrackStatus.FAILED,
            error_code=str(code),
            error_message=message,
            attempts=1,
            source=source,
            created_at=now,
            updated_at=now,
        )
        row = track_to_row(track)
        insert = self._insert().values(row)
        if source.location is not None:
            location = tracks.c.source_location
            target = sa.func.md5(location) if self.dialect == "postgresql" else location
            insert = insert.on_conflict_do_update(
                index_elements=[target],
                index_where=tracks.c.status == TrackStatus.FAILED.value,
                set_={
                    "attempts": tracks.c.attempts + 1,
                    "error_code": insert.excluded.error_code,
                    "error_message": insert.excluded.error_message,
                    "source_type": insert.excluded.source_type,
                    "original_filename": insert.excluded.original_filename,
                    "updated_at": insert.excluded.updated_at,
                },
            )
        async with self._tx("insert") as conn:
            result = await conn.execute(insert.returning(*track_columns))
            return row_to_track(result.mappings().one())

    async def clear_failures(self, location: str) -> int:
        """Delete the FAILED rows for ``location`` (after it was ingested successfully)."""
        async with self._tx("delete") as conn:
            result = await conn.execute(
                sa.delete(tracks).where(
                    tracks.c.source_location == location, tracks.c.status == TrackStatus.FAILED.value
                )
            )
            return int(result.rowcount or 0)

    async def clear_failures_many(self, locations: Sequence[str]) -> int:
        """:meth:`clear_failures` for many locations in one transaction (bulk ingest)."""
        unique = list(dict.fromkeys(locations))
        deleted = 0
        async with self._tx("delete") as conn:
            for chunk in _chunks(unique, IN_CHUNK):
                result = await conn.execute(
                    sa.delete(tracks).where(
                        tracks.c.source_location.in_(chunk), tracks.c.status == TrackStatus.FAILED.value
                    )
                )
                deleted += int(result.rowcount or 0)
        return deleted

    async def update_tags(self, track_id: uuid.UUID, tags: Tags) -> Track | None:
        """Replace a track's tags (all of them: pass the merged result); ``None`` if it is gone."""
        values: dict[str, Any] = {field: getattr(tags, field) for field in TAG_FIELDS}
        for field in LIST_TAG_FIELDS:
            values[field] = list(getattr(tags, field))
        values["updated_at"] = _now()
        table, returned = tracks, track_columns
        if self.dialect == "postgresql":
            values[GENRE_KEYS] = genre_keys(tags.genres)
            table, returned = pg_tracks, tuple(pg_tracks.c[name] for name in TRACK_COLUMNS)
        async with self._tx("update") as conn:
            filename = None
            if not tags.title:  # an untitled track stays findable by its file name's words
                filename = await conn.scalar(sa.select(tracks.c.original_filename).where(tracks.c.id == track_id))
            values.update(search_columns(tags, filename))
            result = await conn.execute(
                sa.update(table).where(table.c.id == track_id).values(values).returning(*returned)
            )
            row = result.mappings().one_or_none()
            if row is None:
                return None
            await self._write_genres(conn, [(track_id, list(tags.genres))], replace=True)
            return row_to_track(row)

    async def delete(self, track_id: uuid.UUID) -> Track | None:
        """Delete a track (its genres cascade); returns the row so the caller can delete blobs."""
        async with self._tx("delete") as conn:
            # The row first: on PostgreSQL deleting genres first would make the genre-keys trigger
            # rewrite a row about to go (the foreign key cascades; the second delete is for SQLite).
            result = await conn.execute(
                sa.delete(tracks).where(tracks.c.id == track_id).returning(*track_columns)
            )
            row = result.mappings().one_or_none()
            await conn.execute(sa.delete(track_genres).where(track_genres.c.track_id == track_id))
            return None if row is None else row_to_track(row)

    async def wipe(self) -> None:
        """Delete every row (staging refresh, tests). The schema stays."""
        async with self._tx("delete") as conn:
            await conn.execute(sa.delete(jobs))
            await conn.execute(sa.delete(tracks))  # rows first: see delete()
            await conn.execute(sa.delete(track_genres))

    async def _write_genres(
        self, conn: AsyncConnection, items: Iterable[tuple[uuid.UUID, list[str]]], *, replace: bool
    ) -> None:
        items = list(items)
        if replace:
            ids = [track_id for track_id, _ in items]
            await conn.execute(sa.delete(track_genres).where(track_genres.c.track_id.in_(ids)))
        params = [
            {"track_id": track_id, "genre": genre, "genre_norm": norm}
            for track_id, genres in items
            for genre, norm in genre_rows(genres)
        ]
        # Multi-row INSERTs, not an executemany: on PostgreSQL that runs one statement per genre row,
        # and the statement-level genre-keys triggers (migration 0004) then fire once per row too.
        for start in range(0, len(params), GENRE_ROWS_PER_INSERT):
            await conn.execute(sa.insert(track_genres).values(params[start : start + GENRE_ROWS_PER_INSERT]))

    # --- reads ---------------------------------------------------------------------------------

    async def get(self, track_id: uuid.UUID) -> Track | None:
        return await self._one(tracks.c.id == track_id)

    async def get_by_sha256(self, sha256: str) -> Track | None:
        return await self._one(tracks.c.sha256 == sha256)

    async def _one(self, where: sa.ColumnElement[bool]) -> Track | None:
        async with self._tx() as conn:
            result = await conn.execute(sa.select(*track_columns).where(where))
            row = result.mappings().one_or_none()
        return None if row is None else row_to_track(row)

    async def list_tracks(
        self, *, cursor: str | None = None, limit: int = 50, status: TrackStatus | None = None
    ) -> TrackPage:
        """Newest first, keyset-paginated on ``(created_at, id)``: pages never shift when rows are
        added, so following ``next_cursor`` visits every older row exactly once."""
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidArgument(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
        query = (
            sa.select(*track_columns)
            .order_by(tracks.c.created_at.desc(), tracks.c.id.desc())
            .limit(limit + 1)
        )
        if status is not None:
            query = query.where(tracks.c.status == TrackStatus(status).value)
        if cursor:
            created_at, last_id = _list_position(cursor)
            query = query.where(
                sa.or_(
                    tracks.c.created_at < created_at,
                    sa.and_(tracks.c.created_at == created_at, tracks.c.id < last_id),
                )
            )
        async with self._tx() as conn:
            rows = (await conn.execute(query)).mappings().all()
        items = [row_to_track(row) for row in rows[:limit]]
        next_cursor = _list_cursor(items[-1].created_at, items[-1].id) if len(rows) > limit else None
        return TrackPage(items=items, next_cursor=next_cursor)

    async def count(self, status: TrackStatus | None = None) -> int:
        query = sa.select(sa.func.count()).select_from(tracks)
        if status is not None:
            query = query.where(tracks.c.status == TrackStatus(status).value)
        async with self._tx() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def count_blob_refs(self, key: str) -> int:
        """How many rows reference blob ``key`` (as audio or thumbnail): delete it only at zero."""
        query = (
            sa.select(sa.func.count())
            .select_from(tracks)
            .where(sa.or_(tracks.c.blob_key == key, tracks.c.thumbnail_key == key))
        )
        derived = sa.select(sa.func.count()).select_from(jobs).where(jobs.c.result_key == key)
        async with self._tx() as conn:
            return int((await conn.execute(query)).scalar_one()) + int((await conn.execute(derived)).scalar_one())

    # --- blob references and locks (loist.catalog.blobs) --------------------------------------

    @asynccontextmanager
    async def locked(
        self, keys: Iterable[str], *, on_blocked: Callable[[], Awaitable[None]] | None = None
    ) -> AsyncIterator[None]:
        """Hold the locks of blob ``keys`` for one transaction; this task's catalog calls inside run
        in it, and it commits when the block ends (rolls back on an error). See ``catalog.blobs``."""
        try:
            async with blobs.hold(self._engine, keys, on_blocked):
                yield
        except LoistError:
            raise
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise database_failed(exc, self._engine.url, action="lock") from None

    async def referenced_keys(self, keys: Sequence[str]) -> set[str]:
        """Which of ``keys`` any row references (audio or thumbnail, any status)."""
        async with self._tx() as conn:
            return await blobs.referenced_keys(conn, keys)

    async def completed_refs(self, *, after: uuid.UUID | None = None, limit: int = 500) -> list[blobs.BlobRefs]:
        """A page of COMPLETED rows' blob keys in id order (pass the last id as ``after``)."""
        async with self._tx() as conn:
            return await blobs.completed_refs(conn, after, limit)

    async def restore(self, track_id: uuid.UUID, blob_key: str, thumbnail_key: str | None) -> Track | None:
        """A row made COMPLETED again with these (verified) blobs; under :meth:`locked`."""
        async with self._tx("update") as conn:
            row = await blobs.restore(conn, track_id, blob_key, thumbnail_key)
            return None if row is None else row_to_track(row)

    async def mark_broken(self, track_id: uuid.UUID, code: str, message: str) -> bool:
        """FAILED with ``code``: a row whose audio is gone (False: the location's FAILED slot is taken)."""
        async with self._tx("update") as conn:
            return await blobs.mark_broken(conn, track_id, code, message)

    async def drop_thumbnail(self, track_id: uuid.UUID) -> bool:
        async with self._tx("update") as conn:
            return await blobs.drop_thumbnail(conn, track_id)

    async def search(self, request: SearchRequest) -> SearchResult:
        started = time.perf_counter()
        try:
            from loist.catalog.search import run_search  # only commands that search load it

            return await run_search(self._engine, self.dialect, request)
        finally:
            metrics.search_took(self.dialect, time.perf_counter() - started)


def _normalized(track: Track) -> Track:
    """``track`` with UTC timestamps, as it reads back from the database."""
    created, updated = utc(track.created_at), utc(track.updated_at)
    if created is track.created_at and updated is track.updated_at:
        return track
    return track.model_copy(update={"created_at": created, "updated_at": updated})


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
