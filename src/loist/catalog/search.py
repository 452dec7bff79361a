"""Search: the only module with dialect-specific SQL (FTS5 on SQLite, tsvector/pg_trgm on PostgreSQL).

How a query runs (both engines, same steps, same answers):

1. :func:`loist.catalog.query.parse_query` turns the text into terms, ranges and keywords with the
   same tokenizer that filled the ``search_*`` columns at write time.
2. The **exact pass**: a single word or prefix alone, by relevance, reads its page from the front of
   the postings (:func:`_walk_page`); every other search matches its positive terms through the
   full-text index (FTS5 ``MATCH`` on SQLite, ``@@`` on the weighted ``search_vector`` with its GIN
   index on PostgreSQL), applies exclusions, phrase adjacency (``LIKE`` on the token columns,
   identical SQL on both), filters and the sort, scores the matches with one integer formula, and
   fetches ``limit + 1`` rows after the cursor's key (keyset pagination).
3. When it finds fewer than :data:`FUZZY_BELOW` tracks, the **fuzzy pass** looks up words that are
   not in the vocabulary (``search_vocab``, kept by triggers) and replaces each with its nearest
   vocabulary words by trigram similarity (candidates from ``pg_trgm`` / an FTS5 ``trigram``
   table, scored by the one Python :func:`~loist.catalog.query.similarity`), then runs again.

Ranking weights are data (:data:`RANKING`): title and artist above album, album above genre,
composer and label. Only COMPLETED tracks are ever returned.

Every name interpolated into SQL text here is a module constant; user text only ever travels as a
bound parameter (and inside FTS5/tsquery expressions only as tokens of letters, digits and symbols,
quoted), hence the file-wide S608 exemption and the ``# nosec B608`` marks on each statement
(bandit gates the pipelines; any new SQL built from strings anywhere else is still reported).
"""
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import math
import operator
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loist.catalog.cursor import decode_cursor, encode_cursor, invalid_cursor, peek_cursor
from loist.catalog.errors import database_failed
from loist.catalog.normalize import normalize_genre
from loist.catalog.query import (
    SEARCH_COLUMNS,
    ParsedQuery,
    Term,
    Token,
    fold,
    inner_trigrams,
    parse_query,
    search_columns,
    similarity,
)
from loist.catalog.rows import row_to_track
from loist.catalog.schema import track_genres, tracks
from loist.errors import LoistError
from loist.model import SearchFilters, SearchHit, SearchRequest, SearchResult, TrackStatus


@dataclass(frozen=True)
class FieldWeight:
    column: str
    weight: float  # relative importance of a match in this field
    pg_label: str  # the tsvector weight class holding it (PostgreSQL has four: A-D)


# The ranking table: each field's weight in the score (see "the score" below) and, on PostgreSQL, the
# tsvector weight class its tokens carry (used to restrict ``field:`` terms to their class).
RANKING: dict[str, FieldWeight] = {
    "title": FieldWeight("search_title", 10.0, "A"),
    "artist": FieldWeight("search_artist", 10.0, "B"),
    "album": FieldWeight("search_album", 4.0, "C"),
    "genre": FieldWeight("search_genre", 2.0, "D"),
    "composer": FieldWeight("search_composer", 2.0, "D"),
    "label": FieldWeight("search_label", 2.0, "D"),
}

FUZZY_BELOW = 3  # run the fuzzy pass when the exact pass finds fewer tracks than this
FUZZY_MIN_SIMILARITY = 0.4  # pg_trgm says 0.3; 0.4 keeps "foret" -> forest without forty other words
FUZZY_EXPANSIONS = 3  # nearest vocabulary words tried per misspelt word
# ... and only those within this much of the nearest one's similarity: "strangr" tries "strange"
# (0.6), not also "stranger"/"stranges" (0.545); "beyonse" keeps "beyond" (0.5) and "beyonce" (0.455).
# Each extra word widens the second pass (at 100K tracks a common word matches thousands of tracks,
# all ranked): the typo kind's p95 fell from ~30 to ~20 ms.
FUZZY_MARGIN = 0.05
FUZZY_CANDIDATES = 64
FACET_LIMIT = 50
# Counting stops here: beyond it ``total`` is this bound and ``total_relation`` is "gte" (Elasticsearch's
# convention; a search UI shows "1,000+"). An exact count of a broad match costs more than the page:
# measured at 100K tracks, a range's capped count takes ~3 ms at 1,000 against 11-20 ms at 10,000.
COUNT_LIMIT = 1_000
# SQLite, text sorted by another key: walk the sort index when matches² >= this x (limit+1) x tracks,
# i.e. when the page's rows are expected within a few times fewer index entries than there are matches.
WALK_FACTOR = 2

FTS_TABLE = "tracks_fts"
VOCAB_TABLE = "search_vocab"
VOCAB_TRGM_TABLE = "search_vocab_trgm"
PG_VECTOR = "search_vector"
# PostgreSQL: the narrow side table (migration 0003) holding the vectors of COMPLETED tracks only, so
# matching, ranking and counting read ~250-byte rows instead of ~800-byte ``tracks`` rows.
PG_SEARCH_TABLE = "track_search"

_COMPLETED = TrackStatus.COMPLETED.value
SQLITE_TRIGGERS = ("tracks_search_ai", "tracks_vocab_ai", "tracks_search_ad", "tracks_search_au", f"{VOCAB_TABLE}_ai")


# --- the score: one integer formula, computed the same way by both engines -----------------------
#
# A track's relevance for a query is the sum, over the query's positive terms, of the term's *impact*
# in the track: the best, over the fields the term may match (one field for ``artist:x``), of
#
#     impact = weight x IMPACT_SCALE // (tokens in that field + IMPACT_DAMPING)
#
# (integer division). A match in a short field counts more than one in a long field (bm25's length
# normalisation without corpus statistics), a title or artist match more than an album match, and so
# on down the RANKING table. Because an impact depends only on the field and the track, it is stored
# with each (token, field, track) in ``search_postings`` (the *postings*, kept by triggers), ordered by
# impact: the best matches of a single word or prefix are read from the front of that index instead
# of scoring every match (see :func:`_walk_page`). Both engines compute the same integers, from the
# same ``search_*`` token columns, so they rank identically.

IMPACT_SCALE = 1000
IMPACT_DAMPING = 3
POSTINGS_TABLE = "search_postings"
FIELD_IDS: dict[str, int] = {name: index for index, name in enumerate(RANKING)}  # stored as ``field``
SQLITE_POSTINGS_TRIGGERS = ("tracks_postings_ai", "tracks_postings_ad", "tracks_postings_au")
# The walk reads at most this many distinct words (a prefix's completions, a typo's replacements);
# a prefix with more completions is ranked the general way (every match scored).
WALK_MAX_WORDS = 16
# ... and past a cursor reads at most this many postings in a round (a list that lost postings of
# tracks already shown is read further; a postings' primary-key lookup each, ~3 us at 1M tracks).
WALK_MAX_READ = 8192
WALK_POSTINGS = True  # tests switch it off to check that both ways give the same pages
PG_POSTINGS_KEY = f"CONSTRAINT pk_{POSTINGS_TABLE} PRIMARY KEY (term, field, impact, track)"


def impact_sql(column: str, weight: float) -> str:
    """The impact of a match in ``column`` (an SQL column reference), as integer SQL for both engines."""
    tokens = f"(length({column}) - length(replace({column}, ' ', '')) + 1)"
    return f"({round(weight * IMPACT_SCALE)} / ({tokens} + {IMPACT_DAMPING}))"


def _sqlite_postings_select(row: str, *, from_tracks: bool = False) -> str:
    """(term, field, impact, track) of one ``tracks`` row (``new``/``old`` in a trigger), or of every
    COMPLETED row (``from_tracks``: ``row`` is then the alias of ``tracks``)."""
    parts = []
    for name, field in RANKING.items():
        column = f"{row}.{field.column}"
        source = f"tracks AS {row}, " if from_tracks else ""
        status = f" AND {row}.status = '{_COMPLETED}'" if from_tracks else ""
        parts.append(
            f"SELECT j.value AS term, {FIELD_IDS[name]} AS field, {impact_sql(column, field.weight)} AS impact, "  # nosec B608
            f"{row}.rowid AS track FROM {source}json_each('[\"' || replace({column}, ' ', '\",\"') || '\"]') AS j "
            f"WHERE {column} <> ''{status}"
        )
    return " UNION ALL ".join(parts)


def _pg_postings_select(row: str) -> str:
    """(term, field, impact, track) of the ``tracks`` row ``row`` (``NEW``/``OLD``, or an alias), distinct."""
    values = ", ".join(
        f"({FIELD_IDS[name]}, {impact_sql(f'{row}.{field.column}', field.weight)}, {row}.{field.column})"
        for name, field in RANKING.items()
    )
    return (
        f"SELECT DISTINCT t.term, v.field::smallint, v.impact, {row}.id AS track "  # nosec B608
        f"FROM (VALUES {values}) AS v(field, impact, col), unnest(string_to_array(v.col, ' ')) AS t(term) "
        "WHERE v.col <> ''"
    )


def postings_ddl(dialect: str, *, keyed: bool = True) -> list[str]:
    """The postings table and the triggers that keep it (idempotent; migration 0005). ``keyed=False``
    (PostgreSQL): the table without its primary key, for filling before the key is built."""
    watched_columns = ["status", *(field.column for field in RANKING.values())]
    watched = ", ".join(watched_columns)
    if dialect == "postgresql":
        # Statement-level triggers over transition tables: one INSERT ... SELECT for a whole batch of
        # tracks rather than a plpgsql call per track. PostgreSQL allows transition tables only for
        # single-event triggers without a column list, hence three triggers, and updates compare the
        # watched columns themselves.
        old_cols = ", ".join(f"o.{name}" for name in watched_columns)
        new_cols = ", ".join(f"r.{name}" for name in watched_columns)
        changed = f"({new_cols}) IS DISTINCT FROM ({old_cols})"
        match_key = "p.term = x.term AND p.field = x.field AND p.impact = x.impact AND p.track = x.track"
        bodies = {
            "insert": (
                "NEW TABLE AS new_rows",
                f"INSERT INTO {POSTINGS_TABLE}(term, field, impact, track) SELECT x.* FROM new_rows AS r "  # nosec B608
                f"CROSS JOIN LATERAL ({_pg_postings_select('r')}) AS x WHERE r.status = '{_COMPLETED}' "
                "ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING;",
            ),
            "delete": (
                "OLD TABLE AS old_rows",
                f"DELETE FROM {POSTINGS_TABLE} AS p USING (SELECT x.* FROM old_rows AS r "  # nosec B608
                f"CROSS JOIN LATERAL ({_pg_postings_select('r')}) AS x WHERE r.status = '{_COMPLETED}') AS x "
                f"WHERE {match_key};",
            ),
            "update": (
                "OLD TABLE AS old_rows NEW TABLE AS new_rows",
                # the old postings of changed rows (r: the old row, o: the new one, compared)
                f"DELETE FROM {POSTINGS_TABLE} AS p USING (SELECT x.* FROM old_rows AS r JOIN new_rows AS o "  # nosec B608
                f"ON o.id = r.id CROSS JOIN LATERAL ({_pg_postings_select('r')}) AS x "
                f"WHERE r.status = '{_COMPLETED}' AND {changed}) AS x WHERE {match_key}; "
                # the new postings of changed rows (r: the new row, o: the old one)
                f"INSERT INTO {POSTINGS_TABLE}(term, field, impact, track) SELECT x.* FROM new_rows AS r "
                f"JOIN old_rows AS o ON o.id = r.id CROSS JOIN LATERAL ({_pg_postings_select('r')}) AS x "
                f"WHERE r.status = '{_COMPLETED}' AND {changed} ORDER BY 1, 2, 3, 4 ON CONFLICT DO NOTHING;",
            ),
        }
        ddl = [
            f'CREATE TABLE IF NOT EXISTS {POSTINGS_TABLE} (term text COLLATE "C" NOT NULL, field smallint NOT NULL, '
            f"impact integer NOT NULL, track uuid NOT NULL{f', {PG_POSTINGS_KEY}' if keyed else ''})",
        ]
        for event, (tables, body) in bodies.items():
            ddl += [
                f"CREATE OR REPLACE FUNCTION loist_search_postings_{event}() RETURNS trigger LANGUAGE plpgsql AS $$ "  # nosec B608
                f"BEGIN {body} RETURN NULL; END $$",
                f"DROP TRIGGER IF EXISTS tracks_search_postings_{event} ON tracks",
                f"CREATE TRIGGER tracks_search_postings_{event} AFTER {event.upper()} ON tracks REFERENCING {tables} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION loist_search_postings_{event}()",
            ]
        return ddl
    key = "(term, field, impact, track)"
    return [
        f"CREATE TABLE IF NOT EXISTS {POSTINGS_TABLE} (term TEXT NOT NULL, field INTEGER NOT NULL, "
        f"impact INTEGER NOT NULL, track INTEGER NOT NULL, PRIMARY KEY {key}) WITHOUT ROWID",
        f"CREATE TRIGGER IF NOT EXISTS tracks_postings_ai AFTER INSERT ON tracks WHEN new.status = '{_COMPLETED}' "  # nosec B608
        f"BEGIN INSERT OR IGNORE INTO {POSTINGS_TABLE}{key} {_sqlite_postings_select('new')}; END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_postings_ad AFTER DELETE ON tracks WHEN old.status = '{_COMPLETED}' "  # nosec B608
        f"BEGIN DELETE FROM {POSTINGS_TABLE} WHERE {key} IN ({_sqlite_postings_select('old')}); END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_postings_au AFTER UPDATE OF {watched} ON tracks BEGIN "  # nosec B608
        f"DELETE FROM {POSTINGS_TABLE} WHERE old.status = '{_COMPLETED}' AND {key} IN ({_sqlite_postings_select('old')}); "
        f"INSERT OR IGNORE INTO {POSTINGS_TABLE}{key} SELECT * FROM ({_sqlite_postings_select('new')}) "
        f"WHERE new.status = '{_COMPLETED}'; END",
    ]


def refill_postings(connection: Connection) -> None:
    """Refill ``search_postings`` from the ``search_*`` columns of the COMPLETED tracks."""
    connection.exec_driver_sql(f"DELETE FROM {POSTINGS_TABLE}")  # nosec B608
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"INSERT INTO {POSTINGS_TABLE}(term, field, impact, track) SELECT x.* FROM tracks AS r "  # nosec B608
            f"CROSS JOIN LATERAL ({_pg_postings_select('r')}) AS x WHERE r.status = '{_COMPLETED}'"
        )
    else:
        connection.exec_driver_sql(
            f"INSERT OR IGNORE INTO {POSTINGS_TABLE}(term, field, impact, track) "  # nosec B608
            f"{_sqlite_postings_select('r', from_tracks=True)}"
        )


def install_postings(connection: Connection) -> None:
    """Create the postings table and its triggers (idempotent) and fill it. Migration 0005."""
    dialect = connection.dialect.name
    # A new PostgreSQL table is filled first and keyed after: one sort instead of an index insertion per row.
    new_pg_table = dialect == "postgresql" and not _has_table(connection, POSTINGS_TABLE)
    ddl = postings_ddl(dialect, keyed=not new_pg_table)
    if dialect == "sqlite":
        for name in SQLITE_POSTINGS_TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    for statement in ddl:
        connection.exec_driver_sql(statement)
    refill_postings(connection)
    if new_pg_table:
        connection.exec_driver_sql(f"ALTER TABLE {POSTINGS_TABLE} ADD {PG_POSTINGS_KEY}")


# --- DDL: installed by migration 0002, re-installed by rebuild_search_index ----------------------


def _sqlite_ddl() -> list[str]:
    cols = ", ".join(field.column for field in RANKING.values())
    new_cols = ", ".join(f"new.{field.column}" for field in RANKING.values())
    concat = " || ' ' || ".join(f"coalesce(new.{field.column}, '')" for field in RANKING.values())
    vocab_insert = (
        f"INSERT OR IGNORE INTO {VOCAB_TABLE}(term) "  # nosec B608
        f"SELECT value FROM json_each('[\"' || replace(trim({concat}), ' ', '\",\"') || '\"]') "
        "WHERE length(value) >= 3 AND value NOT GLOB '*[0-9]*';"
    )
    watched = ", ".join(["status", *(field.column for field in RANKING.values())])
    return [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5({cols}, tokenize='ascii', prefix='2 3')",
        f"CREATE TABLE IF NOT EXISTS {VOCAB_TABLE} (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE)",
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {VOCAB_TRGM_TABLE} USING fts5(term, content='{VOCAB_TABLE}', "
        "content_rowid='id', tokenize='trigram')",
        f"CREATE TRIGGER IF NOT EXISTS {VOCAB_TABLE}_ai AFTER INSERT ON {VOCAB_TABLE} BEGIN "  # nosec B608
        f"INSERT INTO {VOCAB_TRGM_TABLE}(rowid, term) VALUES (new.id, new.term); END",
        # Insert: two triggers (their relative order does not matter), VALUES rather than SELECT
        # (measurably faster per row during bulk ingest).
        f"CREATE TRIGGER IF NOT EXISTS tracks_search_ai AFTER INSERT ON tracks WHEN new.status = '{_COMPLETED}' "  # nosec B608
        f"BEGIN INSERT INTO {FTS_TABLE}(rowid, {cols}) VALUES (new.rowid, {new_cols}); END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_vocab_ai AFTER INSERT ON tracks BEGIN {vocab_insert} END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_search_ad AFTER DELETE ON tracks BEGIN "  # nosec B608
        f"DELETE FROM {FTS_TABLE} WHERE rowid = old.rowid; END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_search_au AFTER UPDATE OF {watched} ON tracks BEGIN "  # nosec B608
        f"DELETE FROM {FTS_TABLE} WHERE rowid = old.rowid; "
        f"INSERT INTO {FTS_TABLE}(rowid, {cols}) SELECT new.rowid, {new_cols} WHERE new.status = '{_COMPLETED}'; "
        f"{vocab_insert} END",
    ]


def _pg_vector_expression() -> str:
    """The generated ``search_vector``: each column's tokens as lexemes weighted by its class.

    The tokens come from Python (``search_*`` columns), so no PostgreSQL parser or dictionary is
    involved: ``'tok':1A`` literals are cast straight to ``tsvector`` and match exactly what SQLite's
    FTS5 ``ascii`` tokenizer sees.
    """
    parts = [
        f"(regexp_replace({field.column}, '(\\S+)', '''\\1'':1{field.pg_label}', 'g'))::tsvector"
        for field in RANKING.values()
    ]
    return " || ".join(parts)


def _pg_ddl() -> list[str]:
    concat = ", ".join(f"NEW.{field.column}" for field in RANKING.values())
    return [
        "CREATE EXTENSION IF NOT EXISTS pg_trgm",
        f'CREATE TABLE IF NOT EXISTS {VOCAB_TABLE} (term text COLLATE "C" PRIMARY KEY)',
        f"CREATE INDEX IF NOT EXISTS ix_{VOCAB_TABLE}_trgm ON {VOCAB_TABLE} USING gin (term gin_trgm_ops)",
        f"""CREATE OR REPLACE FUNCTION loist_search_vocab() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO {VOCAB_TABLE}(term)
  SELECT DISTINCT t FROM unnest(string_to_array(concat_ws(' ', {concat}), ' ')) AS t
  WHERE length(t) >= 3 AND t !~ '[0-9]'
  ON CONFLICT DO NOTHING;
  RETURN NULL;
END $$""",  # nosec B608
        "DROP TRIGGER IF EXISTS tracks_search_vocab ON tracks",
        "CREATE TRIGGER tracks_search_vocab AFTER INSERT OR UPDATE OF "
        + ", ".join(field.column for field in RANKING.values())
        + " ON tracks FOR EACH ROW EXECUTE FUNCTION loist_search_vocab()",
    ]


def pg_search_table_ddl() -> list[str]:
    """The side table ``track_search`` and the trigger that keeps it (idempotent; migration 0003).

    An AFTER trigger sees the stored generated ``search_vector``; deletes cascade by foreign key.
    """
    watched = ", ".join(["status", *(field.column for field in RANKING.values())])
    return [
        f"CREATE TABLE IF NOT EXISTS {PG_SEARCH_TABLE} (id uuid PRIMARY KEY REFERENCES tracks(id) "
        f"ON DELETE CASCADE, {PG_VECTOR} tsvector NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS ix_{PG_SEARCH_TABLE}_{PG_VECTOR} ON {PG_SEARCH_TABLE} USING gin ({PG_VECTOR})",
        f"""CREATE OR REPLACE FUNCTION loist_track_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.status = '{_COMPLETED}' THEN
    INSERT INTO {PG_SEARCH_TABLE}(id, {PG_VECTOR}) VALUES (NEW.id, NEW.{PG_VECTOR})
    ON CONFLICT (id) DO UPDATE SET {PG_VECTOR} = EXCLUDED.{PG_VECTOR};
  ELSE
    DELETE FROM {PG_SEARCH_TABLE} WHERE id = NEW.id;
  END IF;
  RETURN NULL;
END $$""",  # nosec B608
        "DROP TRIGGER IF EXISTS tracks_track_search ON tracks",
        f"CREATE TRIGGER tracks_track_search AFTER INSERT OR UPDATE OF {watched} ON tracks "
        "FOR EACH ROW EXECUTE FUNCTION loist_track_search()",
    ]


def pg_refill_search_table(connection: Connection) -> None:
    """Refill ``track_search`` from ``tracks`` (migration 0003 and :func:`rebuild_search_index`)."""
    connection.exec_driver_sql(f"DELETE FROM {PG_SEARCH_TABLE}")  # nosec B608
    connection.exec_driver_sql(
        f"INSERT INTO {PG_SEARCH_TABLE}(id, {PG_VECTOR}) SELECT id, {PG_VECTOR} FROM tracks "  # nosec B608
        f"WHERE status = '{_COMPLETED}' AND {PG_VECTOR} IS NOT NULL"
    )


def install_search(connection: Connection) -> None:
    """Create the search tables, triggers and functions (idempotent). Called by migration 0002."""
    ddl = _pg_ddl() if connection.dialect.name == "postgresql" else _sqlite_ddl()
    for statement in ddl:
        connection.exec_driver_sql(statement)


def rebuild_search_index(connection: Connection) -> None:
    """Recreate the search triggers and refill the indexes from the ``search_*`` columns.

    Any migration that recreates ``tracks`` (Alembic batch mode on SQLite copies the table and
    silently drops its triggers, and the copy gets new rowids) must call this afterwards.
    """
    dialect = connection.dialect.name
    if dialect == "postgresql":
        install_search(connection)  # the trigger is per table: recreate it if the table was replaced
        connection.exec_driver_sql(f"TRUNCATE {VOCAB_TABLE}")
        connection.exec_driver_sql(
            f"INSERT INTO {VOCAB_TABLE}(term) SELECT DISTINCT t FROM tracks, unnest(string_to_array(concat_ws(' ', "  # nosec B608
            + ", ".join(field.column for field in RANKING.values())
            + "), ' ')) AS t WHERE length(t) >= 3 AND t !~ '[0-9]' ON CONFLICT DO NOTHING"
        )
        if _has_table(connection, PG_SEARCH_TABLE):
            for statement in pg_search_table_ddl():
                connection.exec_driver_sql(statement)
            pg_refill_search_table(connection)
        if _has_table(connection, POSTINGS_TABLE):
            install_postings(connection)
        return
    for name in SQLITE_TRIGGERS:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    install_search(connection)
    cols = ", ".join(field.column for field in RANKING.values())
    connection.exec_driver_sql(f"DELETE FROM {FTS_TABLE}")  # nosec B608
    connection.exec_driver_sql(
        f"INSERT INTO {FTS_TABLE}(rowid, {cols}) SELECT rowid, {cols} FROM tracks WHERE status = '{_COMPLETED}'"  # nosec B608
    )
    connection.exec_driver_sql(f"INSERT INTO {VOCAB_TRGM_TABLE}({VOCAB_TRGM_TABLE}) VALUES ('delete-all')")  # nosec B608
    connection.exec_driver_sql(f"DELETE FROM {VOCAB_TABLE}")  # nosec B608
    concat = " || ' ' || ".join(f"coalesce({field.column}, '')" for field in RANKING.values())
    connection.exec_driver_sql(
        f"INSERT OR IGNORE INTO {VOCAB_TABLE}(term) SELECT j.value FROM tracks, "  # nosec B608
        f"json_each('[\"' || replace(trim({concat}), ' ', '\",\"') || '\"]') AS j "
        "WHERE length(j.value) >= 3 AND j.value NOT GLOB '*[0-9]*'"
    )
    if _has_table(connection, POSTINGS_TABLE):
        install_postings(connection)


def _has_table(connection: Connection, name: str) -> bool:
    if connection.dialect.name == "postgresql":
        return connection.exec_driver_sql(f"SELECT to_regclass('{name}')").scalar() is not None
    found = connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.first() is not None


def backfill_search_columns(connection: Connection, batch: int = 2000) -> int:
    """Fill the ``search_*`` columns of existing rows from their tags (migration 0002 and repairs)."""
    source_cols = ["title", "artist", "album", "album_artist", "composer", "label"]
    table = sa.table(
        "tracks",
        sa.column("id", sa.Uuid()),
        sa.column("genres", sa.JSON()),
        *(sa.column(name, sa.Text()) for name in source_cols),
    )
    done = 0
    last: Any = None
    while True:
        query = sa.select(table).order_by(table.c.id).limit(batch)
        if last is not None:
            query = query.where(table.c.id > last)
        rows = connection.execute(query).mappings().all()
        if not rows:
            return done
        params = []
        for row in rows:
            values = search_columns(dict(row))
            params.append({"b_id": row["id"], **values})
        update = (
            sa.table("tracks", sa.column("id", sa.Uuid()), *(sa.column(c) for c in SEARCH_COLUMNS.values()))
        )
        statement = (
            update.update()
            .where(update.c.id == sa.bindparam("b_id", type_=sa.Uuid()))
            .values({column: sa.bindparam(column) for column in SEARCH_COLUMNS.values()})
        )
        connection.execute(statement, params)
        done += len(rows)
        last = rows[-1]["id"]


# --- cursors -----------------------------------------------------------------------------------


def _request_fingerprint(request: SearchRequest, order: str) -> str:
    material = json.dumps(
        [request.query, request.filters.model_dump(mode="json"), request.sort, order],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _encode_cursor(fingerprint: str, key: list[Any], total: int, fuzzy: bool, capped: bool = False) -> str:
    """The cursor: the last row's sort key, the search's fingerprint, the total of page one (and
    whether it is a lower bound), and whether page one came from the fuzzy pass (later pages must
    come from the same pass)."""
    return encode_cursor({"f": fingerprint, "k": key, "t": total, "z": int(fuzzy), "g": int(capped)})


def _cursor_is_fuzzy(cursor: str | None) -> bool:
    """Peek at the pass flag; a bad cursor says no here and is rejected by :func:`_decode_cursor`."""
    data = peek_cursor(cursor) if cursor else None
    return data is not None and data.get("z") == 1


def _decode_cursor(cursor: str, fingerprint: str, size: int) -> tuple[list[Any], int, bool]:
    data = decode_cursor(cursor)
    key, total, capped = data.get("k"), data.get("t"), data.get("g") == 1
    if not (isinstance(key, list) and len(key) == size and data.get("f") == fingerprint):
        raise invalid_cursor()
    if not (isinstance(total, int) and total >= 0):
        raise invalid_cursor()
    return key, total, capped


# --- the query builder -------------------------------------------------------------------------


def _col(name: str) -> sa.ColumnElement[Any]:
    """A ``tracks`` column; the search columns may be absent from the Core table, so fall back."""
    if name in tracks.c:
        return tracks.c[name]
    return sa.literal_column(f"tracks.{name}", type_=sa.Text())


def _padded(column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    return sa.literal_column("' '", type_=sa.Text()).concat(column).concat(sa.literal_column("' '"))


def _token_like(dialect: str, padded: sa.ColumnElement[Any], token: Token) -> sa.ColumnElement[bool]:
    """A ``search_*`` token column, ``padded`` with a space each side (:func:`_padded`), holds ``token``
    (or a fuzzy alternative) as a whole word or, for a prefix token, as the start of a word: the one
    test shared by scoring and field checks.

    ``strpos``/``instr(...) > 0`` rather than ``LIKE '% word %'``: the same test, but PostgreSQL's
    planner estimates a LIKE on an expression at 0.5 % of rows and then sorts every text match instead
    of walking a sort index (the 10th page of ``genre:rock`` by year: 30 ms against 1.5 ms); a
    comparison gets 1/3.
    """
    find = sa.func.strpos if dialect == "postgresql" else sa.func.instr
    words = [token.text, *token.fuzzy]
    clauses = []
    for index, word in enumerate(words):
        prefix = token.prefix and index == 0
        needle = sa.literal(f" {word}" if prefix else f" {word} ", sa.Text())
        clauses.append(find(padded, needle) > 0)
    return sa.or_(*clauses)


def _sum(scores: list[sa.ColumnElement[Any]]) -> sa.ColumnElement[Any]:
    return functools.reduce(operator.add, scores)


class _Builder:
    """Builds the SQL of one search for one dialect."""

    def __init__(self, dialect: str, parsed: ParsedQuery, filters: SearchFilters) -> None:
        self.dialect = dialect
        self.parsed = parsed
        self.filters = filters
        self._params = 0
        self._conditions: dict[tuple[bool, bool], list[sa.ColumnElement[bool]]] = {}
        self._fields: dict[str, tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]] = {}

    def _name(self) -> str:
        self._params += 1
        return f"sq{self._params}"

    # -- engine-specific match expressions --

    def _fts5_token(self, token: Token) -> str:
        words = [f'"{token.text}"' + (" *" if token.prefix else ""), *(f'"{word}"' for word in token.fuzzy)]
        return words[0] if len(words) == 1 else "(" + " OR ".join(words) + ")"

    def _fts5_term(self, term: Term) -> str:
        groups = [" AND ".join(self._fts5_token(token) for token in group) for group in term.alternatives]
        expression = groups[0] if len(groups) == 1 else " OR ".join(f"({group})" for group in groups)
        if term.field:
            return f"{{{RANKING[term.field].column}}} : ({expression})"
        return f"({expression})"

    def _ts_token(self, token: Token, label: str) -> str:
        first = f"'{token.text}':" + ("*" if token.prefix else "") + label
        words = [first.rstrip(":"), *(f"'{word}'" + (f":{label}" if label else "") for word in token.fuzzy)]
        return words[0] if len(words) == 1 else "(" + " | ".join(words) + ")"

    def _ts_term(self, term: Term) -> str:
        label = RANKING[term.field].pg_label if term.field else ""
        groups = [" & ".join(self._ts_token(token, label) for token in group) for group in term.alternatives]
        return "(" + " | ".join(f"({group})" for group in groups) + ")"

    def _post_filter(self, term: Term) -> sa.ColumnElement[bool] | None:
        """What the index alone cannot decide: phrase adjacency, and (PostgreSQL) which D field."""
        columns = [_col(RANKING[term.field].column)] if term.field else [_col(f.column) for f in RANKING.values()]
        if term.phrase:
            pattern = "% " + " ".join(term.phrase) + " %"
            return sa.or_(*(_padded(column).like(pattern) for column in columns))
        if self.dialect == "postgresql" and term.field:
            label = RANKING[term.field].pg_label
            if sum(1 for f in RANKING.values() if f.pg_label == label) > 1:
                column = columns[0]
                return sa.or_(
                    *(sa.and_(*(_token_like(self.dialect, _padded(column), token) for token in group))
                      for group in term.alternatives)
                )
        return None

    def _rowid(self) -> sa.ColumnElement[Any]:
        return sa.literal_column("tracks.rowid", type_=sa.Integer())

    def _vector(self) -> sa.ColumnElement[Any]:
        return sa.literal_column(f"tracks.{PG_VECTOR}")

    def _tsquery(self, text: str) -> sa.ColumnElement[Any]:
        return sa.cast(sa.bindparam(self._name(), text, type_=sa.Text()), postgresql.TSQUERY())

    def term_condition(self, term: Term) -> sa.ColumnElement[bool]:
        """A boolean that is true when ``term`` (ignoring its sign) matches the row."""
        if self.dialect == "postgresql":
            condition: sa.ColumnElement[bool] = self._vector().op("@@")(self._tsquery(self._ts_term(term)))
        else:
            name = self._name()
            subquery = sa.text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{name}").bindparams(  # nosec B608
                sa.bindparam(name, self._fts5_term(term))
            )
            condition = self._rowid().in_(subquery)
        post = self._post_filter(term)
        return condition if post is None else sa.and_(condition, post)

    # -- the pieces of one statement --

    def conditions(self, *, indexed_ranges: bool = False, post_filters: bool = True) -> list[sa.ColumnElement[bool]]:
        """The non-text conditions, status first; ``indexed_ranges``: compare ranges on the sort indexes'
        expressions on SQLite too (right for counts, which visit every match anyway); ``post_filters``:
        with the positive terms' checks the index cannot make (phrases, one of several class-D fields).
        Built once per variant (a search asks several times)."""
        key = (indexed_ranges, post_filters)
        if key not in self._conditions:
            self._conditions[key] = self._make_conditions(indexed_ranges=indexed_ranges, post_filters=post_filters)
        return list(self._conditions[key])

    def _make_conditions(self, *, indexed_ranges: bool, post_filters: bool) -> list[sa.ColumnElement[bool]]:
        parsed, filters = self.parsed, self.filters
        # SQLite: "+status" keeps the planner off ix_tracks_status, useless for COMPLETED (nearly every
        # row) and in the way of the sort indexes (a 100K-row sort instead of an index scan).
        status: sa.ColumnElement[bool] = (
            sa.literal_column("+tracks.status", type_=sa.Text()) == sa.literal_column(f"'{_COMPLETED}'")
            if self.dialect == "sqlite"
            else tracks.c.status == _COMPLETED
        )
        out: list[sa.ColumnElement[bool]] = [status]
        for term in parsed.positive if post_filters else []:
            post = self._post_filter(term)
            if post is not None:
                out.append(post)
        for term in parsed.negative:
            out.append(sa.not_(self.term_condition(term)))
        # SQLite: plain comparisons (NULL never matches a range), deliberately not on an indexed
        # expression: without statistics SQLite would range-scan tens of thousands of rows and sort
        # them instead of walking the sort index and stopping after one page. PostgreSQL has the
        # statistics to choose, so there ranges compare coalesce(column, 0), the expression the sort
        # indexes are built on (counts become index-only scans), with a lower bound > 0 that keeps
        # unknown values out exactly as NULL does.
        pg = self.dialect == "postgresql" or indexed_ranges
        year: sa.ColumnElement[Any] = sa.func.coalesce(tracks.c.year, sa.literal_column("0")) if pg else tracks.c.year
        duration: sa.ColumnElement[Any] = (
            sa.func.coalesce(tracks.c.duration_s, sa.literal_column("0")) if pg else tracks.c.duration_s
        )
        year_ranges = [(parsed.year.min, parsed.year.max)] if parsed.year else []
        year_ranges += [(filters.year.min, filters.year.max)] if filters.year else []
        for low, high in year_ranges:  # whole years: an integer comparison uses the statistics
            if low is not None or pg:
                out.append(year >= max(math.ceil(low) if low is not None else 1, 1))
            if high is not None:
                out.append(year <= math.floor(high))
        duration_ranges = [(parsed.duration.min, parsed.duration.max)] if parsed.duration else []
        duration_ranges += [(filters.duration.min, filters.duration.max)] if filters.duration else []
        for low, high in duration_ranges:
            if low is not None or pg:
                out.append(duration >= (low if low is not None and low > 0 else 1e-9))
            if high is not None:
                out.append(duration <= high)
        if parsed.added is not None:
            low_at, high_at = parsed.added
            if low_at is not None:
                out.append(tracks.c.created_at >= low_at)
            if high_at is not None:
                out.append(tracks.c.created_at <= high_at)
        fmt = tracks.c.format  # stored canonical and lower-case by ingest
        for formats in (parsed.formats, [fold(value).strip().lstrip(".") for value in filters.format]):
            wanted = sorted({value for value in formats if value})
            if wanted:
                out.append(fmt.in_(wanted))
        if parsed.excluded_formats:
            out.append(sa.or_(tracks.c.format.is_(None), fmt.not_in(sorted(set(parsed.excluded_formats)))))
        genres = sorted({normalize_genre(value) for value in filters.genre if normalize_genre(value)})
        if genres:
            if self.dialect == "postgresql":
                # "tracks.genre_keys && {...}" (migration 0004): a GIN bitmap the planner ANDs with the
                # year/format/full-text indexes before it reads any row, or a cheap check on a row it
                # reads anyway while walking a sort index. One array parameter: one statement text
                # whatever the number of genres. (Was "id = ANY(ARRAY(<ids from track_genres>))": at
                # 1M tracks ~32,000 rows per genre visited for the page and again for the count.)
                text_array = postgresql.ARRAY(sa.Text())
                keys = sa.literal_column("tracks.genre_keys", type_=text_array)  # schema.GENRE_KEYS
                wanted = sa.cast(sa.bindparam(self._name(), genres, type_=text_array), text_array)
                out.append(keys.op("&&")(wanted))
            else:
                # SQLite: start from the genre index, never from a scan of tracks.
                ids = sa.select(track_genres.c.track_id).where(track_genres.c.genre_norm.in_(genres))
                out.append(tracks.c.id.in_(ids))
        return out

    # -- the score (see "the score" at the top of this module) --

    def _field_parts(self, name: str) -> tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]:
        """A field's padded token column and its impact, built once per search (a query with many
        tokens uses them for each: building them per token cost more than running the search)."""
        if name not in self._fields:
            field = RANKING[name]
            self._fields[name] = (
                _padded(_col(field.column)),
                sa.literal_column(impact_sql(f"tracks.{field.column}", field.weight), sa.Integer()),
            )
        return self._fields[name]

    def token_score(self, token: Token, fields: Sequence[str]) -> sa.ColumnElement[Any]:
        """The impact of ``token`` in this ``tracks`` row: its best field among ``fields``, else 0."""
        zero = sa.literal_column("0", sa.Integer())
        cases = []
        for name in fields:
            padded, impact = self._field_parts(name)
            cases.append(sa.case((_token_like(self.dialect, padded, token), impact), else_=zero))
        return self._best(cases)

    def term_score(self, term: Term) -> sa.ColumnElement[Any]:
        """A term's score: its best alternative, an alternative scoring the sum of its tokens' impacts."""
        fields = [term.field] if term.field else list(RANKING)
        return self._best([_sum([self.token_score(token, fields) for token in group]) for group in term.alternatives])

    def score(self) -> sa.ColumnElement[Any]:
        """The relevance of this ``tracks`` row: the sum of the positive terms' scores."""
        return _sum([self.term_score(term) for term in self.parsed.positive])

    def _best(self, scores: list[sa.ColumnElement[Any]]) -> sa.ColumnElement[Any]:
        """The greatest of ``scores`` (PostgreSQL ``greatest``, SQLite's multi-argument scalar ``max``)."""
        if len(scores) == 1:
            return scores[0]
        best = sa.func.greatest if self.dialect == "postgresql" else sa.func.max
        return best(*scores, type_=sa.Integer())

    def match(self, sort: str = "relevance", *, scored: bool = True) -> _Match | None:
        """How the positive terms are matched and scored; None when the query has no text.
        ``scored=False``: without the score expression (the page comes from the postings)."""
        positive = self.parsed.positive
        if not positive:
            return None
        score = self.score() if scored else sa.literal_column("0", type_=sa.Integer())
        # Sorted by another key, the score is computed for the page's rows only.
        page_score = None if sort == "relevance" else score
        rank = score if sort == "relevance" else sa.literal_column("0", type_=sa.Integer())
        if self.dialect == "postgresql":
            tsq = self._tsquery(" & ".join(self._ts_term(term) for term in positive))
            condition = self._vector().op("@@")(tsq)
            # The count reads the narrow side table (COMPLETED tracks only), and stops at COUNT_LIMIT + 1.
            side_vector = sa.literal_column(f"{PG_SEARCH_TABLE}.{PG_VECTOR}")
            side_tsq = self._tsquery(" & ".join(self._ts_term(term) for term in positive))
            side = sa.table(PG_SEARCH_TABLE, sa.column("id", sa.Uuid()))
            counted = sa.select(sa.literal_column("1")).select_from(side).where(side_vector.op("@@")(side_tsq))
            fts_count = sa.select(sa.func.count()).select_from(counted.limit(COUNT_LIMIT + 1).subquery("c"))
            return _Match(
                source=tracks,
                score=rank,
                rid=tracks.c.id,
                condition=condition,
                fts_count=fts_count,
                page_score=page_score,
            )
        expression = " AND ".join(self._fts5_term(term) for term in positive)
        name = self._name()
        match = (
            sa.text(f"SELECT rowid AS rid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{name}")  # nosec B608
            .bindparams(sa.bindparam(name, expression))
            .columns(rid=sa.Integer())
            .subquery("m")
        )
        count_name = self._name()
        ids = sa.text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{count_name}").bindparams(  # nosec B608
            sa.bindparam(count_name, expression)
        )
        fts_count = sa.text(
            f"SELECT count(*) FROM (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{count_name} "  # nosec B608
            f"LIMIT {COUNT_LIMIT + 1})"
        ).bindparams(sa.bindparam(count_name, expression))
        # The walk decision (see _run) needs to know whether the matches reach a bound that depends on
        # the table size and the page, not on COUNT_LIMIT: counted up to a bound passed at run time.
        walk_count_name = self._name()
        walk_count = sa.text(
            f"SELECT count(*) FROM (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{walk_count_name} "  # nosec B608
            "LIMIT :walk_bound)"
        ).bindparams(sa.bindparam(walk_count_name, expression), sa.bindparam("walk_bound", type_=sa.Integer()))
        # "+m.rid": the unary plus keeps SQLite from using the join as an FTS rowid lookup, which
        # would run the full-text query once per row of ``tracks`` (seconds instead of milliseconds).
        joined = match.join(tracks, self._rowid() == sa.literal_column("+m.rid", type_=sa.Integer()))
        # For walking a sort index (see _run): "+rowid IN (matches)" keeps SQLite from driving the plan
        # by the match list.
        walk_name = self._name()
        walk_ids = sa.text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{walk_name}").bindparams(  # nosec B608
            sa.bindparam(walk_name, expression)
        )
        return _Match(
            source=joined,
            score=rank,
            rid=match.c.rid,
            condition=self._rowid().in_(ids),
            fts_count=fts_count,
            page_score=page_score,
            walk_condition=sa.literal_column("+tracks.rowid", type_=sa.Integer()).in_(walk_ids),
            walk_count=walk_count,
        )


@dataclass
class _Match:
    source: sa.FromClause  # FROM for the page query (the text matches joined to tracks)
    score: sa.ColumnElement[Any]  # the relevance (a constant 0 when sorting by another key)
    rid: sa.ColumnElement[Any]  # unique per match: the relevance tie-break and the join key
    condition: sa.ColumnElement[bool]  # "this tracks row matches" (counts, facets)
    fts_count: sa.Executable  # count straight from the FTS index / side table (capped)
    page_score: sa.ColumnElement[Any] | None = None  # other sorts: the score, for the page's rows only
    walk_condition: sa.ColumnElement[bool] | None = None  # SQLite: "matches", without driving the plan
    walk_count: sa.TextClause | None = None  # SQLite: the match count up to :walk_bound


def _sort_keys(
    dialect: str, sort: str, match: _Match | None
) -> list[tuple[sa.ColumnElement[Any], str]]:
    """The ORDER BY columns (all in one direction, the last one unique) and how to encode them."""

    def text(column: str) -> sa.ColumnElement[Any]:
        expression = _col(column)
        return expression.collate("C") if dialect == "postgresql" else expression

    if sort == "relevance" and match is None:
        sort = "added"
    if sort == "relevance":
        assert match is not None
        return [(match.score, "float"), (match.rid, "int" if dialect == "sqlite" else "uuid")]
    keys: list[tuple[sa.ColumnElement[Any], str]]
    if sort == "added":
        keys = [(tracks.c.created_at, "datetime")]
    elif sort in ("title", "artist", "album"):
        keys = [(text(f"search_{sort}"), "str")]
    elif sort == "year":
        keys = [(sa.func.coalesce(tracks.c.year, sa.literal_column("0")), "int")]
    else:  # duration
        keys = [(sa.func.coalesce(tracks.c.duration_s, sa.literal_column("0")), "float")]
    keys.append((tracks.c.id, "uuid"))
    return keys


def _key_value(kind: str, value: Any) -> Any:
    if kind == "datetime":
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.isoformat() if value.tzinfo else value.replace(tzinfo=UTC).isoformat()
    if kind == "uuid":
        return str(value)
    if kind == "float":
        return float(value or 0.0)
    if kind == "int":
        return int(value or 0)
    return value or ""


def _bind_key(kind: str, value: Any) -> sa.ColumnElement[Any]:
    try:
        if kind == "datetime":
            return sa.literal(datetime.fromisoformat(value), tracks.c.created_at.type)
        if kind == "uuid":
            return sa.literal(uuid.UUID(value), sa.Uuid())
        if kind == "float":
            return sa.literal(float(value), sa.Float())
        if kind == "int":
            return sa.literal(int(value), sa.Integer())
        if not isinstance(value, str):
            raise TypeError(value)
        return sa.literal(value, sa.Text())
    except (TypeError, ValueError) as exc:
        raise invalid_cursor() from exc


# --- running a search --------------------------------------------------------------------------


async def run_search(engine: AsyncEngine, dialect: str, request: SearchRequest) -> SearchResult:
    """Run ``request`` against the catalog on ``engine`` (``dialect``: ``sqlite`` or ``postgresql``)."""
    parsed = parse_query(request.query)
    try:
        async with engine.connect() as conn:
            result = await _search(engine, conn, dialect, request, parsed)
            await conn.rollback()
            return result
    except LoistError:
        raise
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise database_failed(exc, engine.url, action="search") from None


async def _search(
    engine: AsyncEngine, conn: AsyncConnection, dialect: str, request: SearchRequest, parsed: ParsedQuery
) -> SearchResult:
    if _cursor_is_fuzzy(request.cursor) and parsed.has_text:
        fuzzy = await _fuzzy_rewrite(conn, dialect, parsed)
        if fuzzy is not None:
            return await _run(engine, conn, dialect, request, fuzzy, fuzzy_pass=True)
    result = await _run(engine, conn, dialect, request, parsed)
    if request.cursor or result.total >= FUZZY_BELOW or not parsed.has_text:
        return result
    fuzzy = await _fuzzy_rewrite(conn, dialect, parsed)
    if fuzzy is None:
        return result
    return await _run(engine, conn, dialect, request, fuzzy, fuzzy_pass=True)


_POSTINGS = sa.table(
    POSTINGS_TABLE,
    sa.column("term", sa.Text()),
    sa.column("field", sa.Integer()),
    sa.column("impact", sa.Integer()),
    sa.column("track"),
)


async def _completions(conn: AsyncConnection, prefix: str, limit: int) -> list[str]:
    """The indexed words starting with ``prefix`` (at most ``limit``): one index probe per word
    (a loose index scan over the postings' leading column), however many tracks hold each word."""
    high = _next_prefix(prefix)
    query = sa.text(
        f"WITH RECURSIVE w(term) AS ("  # nosec B608
        f"SELECT (SELECT min(term) FROM {POSTINGS_TABLE} WHERE term >= :low AND term < :high) "
        f"UNION ALL SELECT (SELECT min(term) FROM {POSTINGS_TABLE} WHERE term > w.term AND term < :high) "
        "FROM w WHERE w.term IS NOT NULL) "
        "SELECT term FROM w WHERE term IS NOT NULL LIMIT :limit"
    ).bindparams(low=prefix, high=high, limit=limit)
    return [row[0] for row in (await conn.execute(query)).all()]


def _one_of(dialect: str, key: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """``key`` is one of the values of the parameter ``name``, passed as ONE parameter (a JSON array on
    SQLite, an array on PostgreSQL): an expanding ``IN`` of thousands of candidates cost more Python
    time rendering its placeholders than the database spent on the lookups."""
    if dialect == "postgresql":
        return key == sa.func.any(sa.bindparam(name, type_=postgresql.ARRAY(sa.Uuid())))
    return key.in_(sa.text(f"SELECT value FROM json_each(:{name})"))  # nosec B608 (a parameter name)


async def _term_words(conn: AsyncConnection, term: Term) -> list[str] | None:
    """The indexed words a term of single words or prefixes can match (a prefix's completions, a
    typo's replacements); None when a prefix has more than WALK_MAX_WORDS completions."""
    words: list[str] = []
    for (token,) in term.alternatives:
        if token.prefix:
            words.extend(await _completions(conn, token.text, WALK_MAX_WORDS + 1))
        else:
            words.append(token.text)
        words.extend(token.fuzzy)
    words = list(dict.fromkeys(words))
    return None if len(words) > WALK_MAX_WORDS else words


@dataclass
class _Walk:
    page: list[tuple[Any, int]]  # (rid, score), best first, at most limit + 1
    total: int | None  # every match, when the first page's lists held them all (a rare word): no count needed
    count: sa.Executable  # counts the matches up to COUNT_LIMIT + 1, by the words found


def _words_count(builder: _Builder, term: Term, words: list[str]) -> sa.Executable:
    """Count the tracks holding any of ``words`` (a term's words, its prefix's completions included).

    By exact words rather than by prefix: PostgreSQL's GIN index answers ``'soldier' | 'soldiers'``
    in 1.4 ms and ``'soldi':*`` in 6.8 ms (100K tracks). A field term (``genre:rock``) counts that
    field's postings: its class-D field cannot be told apart in the full-text index without reading
    the rows. A track has at most one posting per word in a field, hence the inner bound."""
    if term.field:
        return sa.text(
            f"SELECT count(*) FROM (SELECT DISTINCT track FROM (SELECT track FROM {POSTINGS_TABLE} "  # nosec B608
            f"WHERE term IN :words AND field = {FIELD_IDS[term.field]} "
            f"LIMIT {(COUNT_LIMIT + 1) * max(1, len(words))}) AS p LIMIT {COUNT_LIMIT + 1}) AS c"
        ).bindparams(sa.bindparam("words", words or [""], expanding=True))
    exact = Token(words[0], fuzzy=tuple(words[1:])) if words else term.alternatives[0][0]
    parsed = replace(builder.parsed, terms=[replace(term, alternatives=((exact,),))])
    match = _Builder(builder.dialect, parsed, builder.filters).match(scored=False)
    if match is None:  # cannot happen: the term has a word
        raise LookupError("a walked term has no text")
    return match.fts_count


def _walkable(parsed: ParsedQuery) -> bool:
    """One positive term of single words or prefixes (no phrase, no word split into parts)."""
    if len(parsed.positive) != 1:
        return False
    term = parsed.positive[0]
    return not term.phrase and all(len(group) == 1 for group in term.alternatives)


async def _walk_page(
    conn: AsyncConnection,
    builder: _Builder,
    request: SearchRequest,
    cursor: list[Any] | None,
) -> _Walk | None:
    """The page's ``(rid, score)`` (up to ``limit + 1``, in order) read from the front of the
    postings, and the number of matches when the lists were read to their ends; or None when this
    search cannot be answered that way (docs/search.md, "How a broad word stays fast").

    Possible for one positive term made of single words or prefixes (a typo's replacements included),
    alone (no exclusion, filter or range: with those, ranking every match through the full-text and
    range indexes measured faster, 5-17 ms against 8-38 ms from 100K to 1M tracks), sorted by relevance
    best first. The postings of each (word, field) the term may match form one *list*, ordered by
    impact. A track's score is its best posting, and every posting above it in that list belongs to
    another track scoring at least as much; so a track on the page is among the first ``limit + 1``
    postings of the list holding its best posting, and merging that many from every list (a track
    keeping its best) gives exactly the page a full ranking gives. Past a cursor, a list may also hold
    a lower posting of a track already shown (its best is above the cursor): those are dropped after
    computing the candidates' scores from their rows, and a list that lost postings is read further,
    up to WALK_MAX_READ postings a round.
    """
    term = builder.parsed.positive[0]  # _run checked: _walkable, and no other condition
    words = await _term_words(conn, term)
    if words is None:
        return None
    sqlite = builder.dialect == "sqlite"
    fields = [term.field] if term.field else list(RANKING)
    if not words:
        return _Walk([], 0, _words_count(builder, term, words))
    track_key = builder._rowid() if sqlite else tracks.c.id
    lists = list(itertools.product(words, fields))
    need = request.limit + 1
    if cursor is not None:
        try:
            after = (float(cursor[0]), int(cursor[1]) if sqlite else uuid.UUID(cursor[1]))
        except (TypeError, ValueError) as exc:
            raise invalid_cursor() from exc
    # Plain SQL text: one small SELECT per list, built by string (SQLAlchemy constructs for dozens of
    # subqueries cost more Python time than the index reads). Only bound parameters carry values.
    base: dict[str, Any] = {}
    binds = []
    past = ""
    if cursor is not None:
        base.update(cursor_score=after[0], cursor_rid=after[1])
        binds += [sa.bindparam("cursor_score", type_=sa.Float()),
                  sa.bindparam("cursor_rid", type_=sa.Integer() if sqlite else sa.Uuid())]
        past = " AND (impact, track) < (:cursor_score, :cursor_rid)"

    def heads(depths: dict[int, int]) -> tuple[sa.TextClause, dict[str, Any]]:
        parts, params, more = [], dict(base), list(binds)
        for index, depth in depths.items():
            word, field = lists[index]
            params[f"w{index}"], params[f"d{index}"] = word, depth
            more += [sa.bindparam(f"w{index}", type_=sa.Text()), sa.bindparam(f"d{index}", type_=sa.Integer())]
            parts.append(
                f"SELECT * FROM (SELECT track, impact, {index} AS list FROM {POSTINGS_TABLE} "  # nosec B608
                f"WHERE term = :w{index} AND field = {FIELD_IDS[field]}{past} "
                f"ORDER BY impact DESC, track DESC LIMIT :d{index}) AS l{index}"
            )
        statement = sa.text(" UNION ALL ".join(parts)).bindparams(*more).columns(
            sa.column("track", track_key.type), sa.column("impact", sa.Integer()), sa.column("list", sa.Integer())
        )
        return statement, params

    # Past a cursor, the candidates' own scores are computed from their rows, once each.
    checked = None
    if cursor is not None:
        checked = (
            sa.select(track_key, builder.term_score(term))
            .select_from(tracks)
            .where(_one_of(builder.dialect, track_key, "candidates"))
        )
    depths = dict.fromkeys(range(len(lists)), need)
    complete = False
    read: dict[int, list[tuple[Any, int]]] = {}
    passed: dict[Any, int | None] = {}  # rid -> its score; None: shown on an earlier page
    while True:
        statement, params = heads(depths)
        for index in depths:
            read[index] = []
        for rid, score, index in (await conn.execute(statement, params)).all():
            read[index].append((rid, int(score)))
        if checked is None:
            found = [(rid, score) for rows in read.values() for rid, score in rows]
            if all(len(rows) < depths[index] for index, rows in read.items()):
                complete = True  # every list read to its end: these are all the matches
            break
        new = list({rid for index in depths for rid, _ in read[index] if rid not in passed})
        if new:
            listed = json.dumps(new) if sqlite else new
            ok = {rid: int(score) for rid, score in (await conn.execute(checked, {"candidates": listed})).all()}
            for rid in new:
                score = ok.get(rid)
                # Drop tracks already shown (their best posting is above the cursor).
                passed[rid] = None if score is None or (score, rid) >= after else score
        kept = {index: [(rid, score) for rid, score in rows if passed[rid] is not None] for index, rows in read.items()}
        short = [index for index, rows in read.items() if len(rows) == depths.get(index, -1) and len(kept[index]) < need]
        if not short:
            found = [(rid, passed[rid]) for rows in kept.values() for rid, _ in rows]  # type: ignore[misc]
            break
        # Read the short lists further, as far as the observed share of tracks not yet shown says is
        # needed; unless that is too far: ranking every match is then cheaper.
        total_read = sum(len(rows) for rows in read.values())
        rate = sum(len(rows) for rows in kept.values()) / total_read if total_read else 0.0
        wanted = {index: max(depths[index] * 2, math.ceil(need / rate * 1.5)) if rate else 0 for index in short}
        planned = sum(wanted.values())
        if not rate or planned > WALK_MAX_READ:
            return None
        depths = wanted
    best: dict[Any, int] = {}
    for rid, score in found:
        best[rid] = max(best.get(rid, score), score)
    ranked = sorted(best.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return _Walk(ranked[:need], len(best) if complete else None, _words_count(builder, term, words))


def _count(builder: _Builder, match: _Match | None, conditions: list[sa.ColumnElement[bool]]) -> sa.Executable:
    """The statement counting the matches, up to COUNT_LIMIT + 1."""
    if match is not None and len(conditions) == 1:
        return match.fts_count
    counted = ([] if match is None else [match.condition]) + conditions
    parsed, filters = builder.parsed, builder.filters
    if builder.dialect == "sqlite" and (parsed.year or parsed.duration or filters.year or filters.duration):
        counted = ([] if match is None else [match.condition]) + builder.conditions(indexed_ranges=True)
    bounded = sa.select(sa.literal_column("1")).select_from(tracks).where(*counted).limit(COUNT_LIMIT + 1)
    statement = sa.select(sa.func.count()).select_from(bounded.subquery("c"))
    if builder.dialect == "postgresql" and match is not None:
        # Text and other conditions, counted on ``tracks``: the text's matches are only reachable through
        # the GIN index as a bitmap, but with LIMIT and a 10x overestimate of the text's matches the
        # planner scans the table or an unrelated index and filters (240 ms at 1M tracks for
        # "breaking duration:10:00.."); a BitmapAnd of the GIN and range indexes visits only the rows
        # matching both (22 ms). Set for this statement's transaction only.
        statement = statement.execution_options(loist_bitmap_only=True)
    return statement


async def _count_on_own_connection(engine: AsyncEngine, count: sa.Executable) -> int:
    async with engine.connect() as other:
        if count.get_execution_options().get("loist_bitmap_only"):
            await other.execute(sa.text("SET LOCAL enable_seqscan = off"))
            await other.execute(sa.text("SET LOCAL enable_indexscan = off"))
        return int((await other.execute(count)).scalar_one())


async def _run(
    engine: AsyncEngine,
    conn: AsyncConnection,
    dialect: str,
    request: SearchRequest,
    parsed: ParsedQuery,
    *,
    fuzzy_pass: bool = False,
) -> SearchResult:
    """One pass: the page (keyset, two phases), the total and the facets."""
    builder = _Builder(dialect, parsed, request.filters)
    sort = request.sort
    order = request.order or ("desc" if sort in ("relevance", "added") else "asc")
    fingerprint = _request_fingerprint(request, order)
    direction = sa.desc if order == "desc" else sa.asc
    total: int | None = None
    capped = False
    raw: list[Any] | None = None
    if request.cursor:
        raw, total, capped = _decode_cursor(request.cursor, fingerprint, 2)  # every sort has two keys
    # Relevance of one word or prefix, best first: read the best postings instead of scoring every
    # match. (Best first only: a track's score is its best posting, which a walk from the bottom meets last.)
    conditions = builder.conditions()
    walked = walk_count = None
    # One term of single words or prefixes, and no filter, range or exclusion:
    walkable = _walkable(parsed) and len(builder.conditions(post_filters=False)) == 1
    if WALK_POSTINGS and walkable and sort == "relevance" and order == "desc":
        walk = await _walk_page(conn, builder, request, raw)
        if walk is not None:
            walked, walk_count = walk.page, walk.count
            if total is None and walk.total is not None:
                total = walk.total
    elif dialect == "postgresql" and total is None and walkable:
        # Sorted by another key: count by the prefix's completions all the same (see _words_count).
        term = parsed.positive[0]
        if any(token.prefix for (token,) in term.alternatives):
            words = await _term_words(conn, term)
            if words is not None:
                walk_count = _words_count(builder, term, words)
    match = builder.match(sort, scored=walked is None)
    keys = _sort_keys(dialect, sort, match)

    # Phase 1: the page's keys only (narrow rows sort fast).
    if match is None:
        source: sa.FromClause = tracks
        rid: sa.ColumnElement[Any] = builder._rowid() if dialect == "sqlite" else tracks.c.id
        where = conditions
        score: sa.ColumnElement[Any] = sa.literal_column("0", type_=sa.Integer())
    else:
        source, rid, score = match.source, match.rid, match.score
        # SQLite: the FTS5 index holds only COMPLETED tracks: [0], the status check, is implied by the join.
        where = [match.condition, *conditions] if dialect == "postgresql" else conditions[1:]
    # SQLite, text alone sorted by another key, many matches: walk the sort index and test each row
    # against the match list (the first page's rows come early) instead of sorting every match. The
    # answer is the same either way; the choice uses the (bounded) match count and the table size.
    index_walk = False
    if (
        dialect == "sqlite"
        and match is not None
        and match.walk_condition is not None
        and match.walk_count is not None
        and sort != "relevance"
        and len(conditions) == 1
    ):
        size = int((await conn.execute(sa.text("SELECT coalesce(max(rowid), 0) FROM tracks"))).scalar_one())
        threshold = WALK_FACTOR * (request.limit + 1) * size
        # Count far enough for both the decision and the (capped) total, no further.
        bound = max(COUNT_LIMIT + 1, math.isqrt(threshold) + 1)
        matches = int((await conn.execute(match.walk_count, {"walk_bound": bound})).scalar_one())
        index_walk = matches * matches >= threshold
        if index_walk:
            source, where = tracks, [conditions[0], match.walk_condition]
            rid = builder._rowid()
            if total is None:
                total = matches
    # The total is counted on the first page and carried by the cursor: deep pages cost one query.
    # When the page must visit every match anyway (text ranked in full; on SQLite also text sorted by
    # another key and a genre filter driving the plan), count them in the same pass with a window
    # instead of a second query (on PostgreSQL a second connection counts the other cases at once).
    if walked is not None or request.cursor:
        window = False
    elif dialect == "sqlite":
        window = not index_walk and (match is not None or bool(request.filters.genre))
    else:
        # Text ranked by relevance: the page scores every match anyway, so it counts them too (one
        # pass, rather than a second scan competing for the same two cores).
        # (Not for a genre filter alone: its GIN bitmap, ANDed with the other conditions' indexes, lets
        # the page stop early, and a window would make it visit every match: 10 ms against 624 at 1M.)
        window = match is not None and sort == "relevance"
    inner = sa.select(rid.label("rid"), score.label("score"), *(e.label(f"_k{i}") for i, (e, _) in enumerate(keys)))
    inner = inner.select_from(source).where(*where)
    if window:
        inner = inner.add_columns(sa.func.count().over().label("_total"))
    if raw is not None:
        left = sa.tuple_(*(expression for expression, _ in keys))
        right = sa.tuple_(*(_bind_key(kind, value) for (_, kind), value in zip(keys, raw, strict=True)))
        inner = inner.where(left < right if order == "desc" else left > right)
    inner_sub = (
        inner.order_by(*(direction(expression) for expression, _ in keys)).limit(request.limit + 1).subquery("p")
    )
    # Phase 2: the full rows of that page.
    join_key = builder._rowid() if dialect == "sqlite" else tracks.c.id
    extra = [inner_sub.c._total] if window else []
    page = (
        sa.select(
            *tracks.c,
            (inner_sub.c.score if match is None or match.page_score is None else match.page_score).label("score"),
            inner_sub.c.rid.label("_rid"),
            *(inner_sub.c[f"_k{i}"] for i in range(len(keys))),
            *extra,
        )
        .select_from(inner_sub.join(tracks, join_key == inner_sub.c.rid))
        .order_by(*(direction(inner_sub.c[f"_k{i}"]) for i in range(len(keys))))
    )
    matched = ([] if match is None else [match.condition]) + conditions
    count = walk_count if walk_count is not None else _count(builder, match, conditions)

    async def fetch_page() -> Sequence[Any]:
        if walked is None:
            return (await conn.execute(page)).mappings().all()
        # The walk's page: its rows by key, in the walk's order.
        if not walked:
            return []
        found = sa.select(*tracks.c, join_key.label("_rid")).where(
            join_key.in_(sa.bindparam("page_keys", expanding=True, type_=join_key.type))
        )
        by_key = {row["_rid"]: row for row in (await conn.execute(found, {"page_keys": [k for k, _ in walked]})).mappings()}
        return [{**by_key[key], "score": value, "_k0": value, "_k1": key} for key, value in walked if key in by_key]

    if total is not None:
        rows = await fetch_page()
    elif dialect == "postgresql" and not window:
        # The page and the total are independent: on PostgreSQL they run at once, on two
        # connections (the server has more than one core; latency is the slower of the two).
        rows, total = await asyncio.gather(fetch_page(), _count_on_own_connection(engine, count))
    else:
        rows = await fetch_page()
        if window:
            total = int(rows[0]["_total"]) if rows else 0
        else:
            total = int((await conn.execute(count)).scalar_one())
    if total > COUNT_LIMIT:  # the same bound on both engines, however the count was made
        total, capped = COUNT_LIMIT, True
    items = [SearchHit(track=row_to_track(row), score=float(row["score"] or 0)) for row in rows[: request.limit]]
    next_cursor = None
    if len(rows) > request.limit:
        last = rows[request.limit - 1]
        next_cursor = _encode_cursor(
            fingerprint,
            [_key_value(kind, last[f"_k{index}"]) for index, (_, kind) in enumerate(keys)],
            total,
            fuzzy_pass,
            capped,
        )
    facets = await _facets(conn, matched) if request.facets else None
    return SearchResult(
        items=items,
        total=total,
        total_relation="gte" if capped else "eq",
        next_cursor=next_cursor,
        facets=facets,
    )


async def _facets(conn: AsyncConnection, where: Sequence[sa.ColumnElement[bool]]) -> dict[str, dict[str, int]]:
    matched = sa.select(tracks.c.id).where(*where)
    count = sa.func.count().label("n")

    async def grouped(key: sa.ColumnElement[Any], query: sa.Select[Any]) -> dict[str, int]:
        query = query.group_by(key).order_by(count.desc(), key).limit(FACET_LIMIT)
        return {str(row[0]): int(row[1]) for row in (await conn.execute(query)).all()}

    if conn.dialect.name == "postgresql":
        # The matches' own genre_keys (migration 0004), unnested: no second lookup per match.
        keys = sa.func.unnest(sa.literal_column("tracks.genre_keys", type_=postgresql.ARRAY(sa.Text())))
        unnested = keys.table_valued("genre_norm").render_derived(name="g")
        pg_key = unnested.c.genre_norm
        genre = await grouped(
            pg_key, sa.select(pg_key, count).select_from(tracks).join(unnested, sa.true()).where(*where)
        )
    else:
        genre_key = track_genres.c.genre_norm
        genre = await grouped(
            genre_key, sa.select(genre_key, count).where(track_genres.c.track_id.in_(matched.scalar_subquery()))
        )
    fmt_key = tracks.c.format
    fmt = await grouped(fmt_key, sa.select(fmt_key, count).where(*where, tracks.c.format.is_not(None)))
    decade_key = tracks.c.year - tracks.c.year % sa.literal_column("10")
    decade_raw = await grouped(decade_key, sa.select(decade_key, count).where(*where, tracks.c.year.is_not(None)))
    decade = {f"{int(float(key))}s": value for key, value in decade_raw.items()}
    return {"genre": genre, "format": fmt, "decade": decade}


# --- fuzzy pass ------------------------------------------------------------------------------


def _fuzzable(token: Token) -> bool:
    text = token.text
    return len(text) >= 3 and not any(ch.isdigit() for ch in text) and len(text) <= 32


def _next_prefix(text: str) -> str:
    return text[:-1] + chr(ord(text[-1]) + 1)


async def _known(conn: AsyncConnection, dialect: str, token: Token) -> bool:
    if token.prefix:
        query = sa.text(f"SELECT 1 FROM {VOCAB_TABLE} WHERE term >= :low AND term < :high LIMIT 1").bindparams(  # nosec B608
            low=token.text, high=_next_prefix(token.text)
        )
    else:
        query = sa.text(f"SELECT 1 FROM {VOCAB_TABLE} WHERE term = :term").bindparams(term=token.text)  # nosec B608
    return (await conn.execute(query)).first() is not None


async def _similar_terms(conn: AsyncConnection, dialect: str, word: str) -> list[str]:
    grams = inner_trigrams(word)
    if not grams:
        return []
    if dialect == "postgresql":
        query = sa.text(
            f"SELECT term FROM {VOCAB_TABLE} WHERE term % :word ORDER BY similarity(term, :word) DESC, term "  # nosec B608
            f"LIMIT {FUZZY_CANDIDATES}"
        ).bindparams(word=word)
    else:
        match = " OR ".join(f'"{gram}"' for gram in grams)
        query = sa.text(
            f"SELECT term FROM {VOCAB_TRGM_TABLE} WHERE {VOCAB_TRGM_TABLE} MATCH :match ORDER BY rank "  # nosec B608
            f"LIMIT {FUZZY_CANDIDATES}"
        ).bindparams(match=match)
    candidates = [row[0] for row in (await conn.execute(query)).all()]
    gram_set = set(grams)
    scored = sorted(
        (
            (-similarity(word, term), term)
            for term in set(candidates)
            if term != word and gram_set & set(inner_trigrams(term))
        ),
    )
    kept = [(-negative, term) for negative, term in scored if -negative >= FUZZY_MIN_SIMILARITY]
    if not kept:
        return []
    best = kept[0][0]
    return [term for score, term in kept if score >= best - FUZZY_MARGIN - 1e-9][:FUZZY_EXPANSIONS]


async def _fuzzy_rewrite(conn: AsyncConnection, dialect: str, parsed: ParsedQuery) -> ParsedQuery | None:
    """The query with each unknown word widened to its nearest vocabulary words; None if no change."""
    changed = False
    terms: list[Term] = []
    for term in parsed.terms:
        if term.negated or term.phrase:
            terms.append(term)
            continue
        groups = []
        for group in term.alternatives:
            tokens = []
            for token in group:
                if _fuzzable(token) and not await _known(conn, dialect, token):
                    similar = await _similar_terms(conn, dialect, token.text)
                    if similar:
                        # The unknown word itself is in no track (the vocabulary holds every indexed
                        # word), so it is dropped rather than OR-ed in: the same matches, and on
                        # PostgreSQL an OR with a dead branch ranked at half the speed (16 vs 9 ms).
                        token = replace(token, text=similar[0], prefix=False, fuzzy=tuple(similar[1:]))
                        changed = True
                tokens.append(token)
            groups.append(tuple(tokens))
        terms.append(replace(term, alternatives=tuple(groups)))
    if not changed:
        return None
    return replace(parsed, terms=terms)
