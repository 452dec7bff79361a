"""The structures search reads, and the triggers that keep them: installed by migrations 0002, 0003 and
0005, re-installed by :func:`rebuild_search_index`.

- SQLite: ``tracks_fts`` (FTS5 over the ``search_*`` token columns, COMPLETED tracks only),
  ``search_vocab`` + ``search_vocab_trgm`` (FTS5 ``trigram``) for typos.
- PostgreSQL: the generated ``tracks.search_vector`` (migration 0002), ``search_vocab`` with a
  ``pg_trgm`` index, and ``track_search``, the narrow side table of COMPLETED tracks' vectors (0003).
- Both: ``search_postings`` (0005, reshaped by 0009; :mod:`loist.catalog.search.postings`), the
  stored impacts of :mod:`loist.catalog.search.tuning`.

Every name interpolated into SQL text here is a module constant or comes from the ranking table,
hence the file-wide S608 exemption and the ``# nosec B608`` marks on each statement.
"""
# ruff: noqa: S608

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loist.catalog.search.postings import POSTINGS_TABLE, has_table, install_postings
from loist.catalog.search.tuning import RANKING
from loist.catalog.text import SEARCH_COLUMNS, search_columns
from loist.model import TrackStatus

FTS_TABLE = "tracks_fts"
VOCAB_TABLE = "search_vocab"
VOCAB_TRGM_TABLE = "search_vocab_trgm"
PG_VECTOR = "search_vector"
# PostgreSQL: the narrow side table (migration 0003) holding the vectors of COMPLETED tracks only, so
# matching, ranking and counting read ~250-byte rows instead of ~800-byte ``tracks`` rows.
PG_SEARCH_TABLE = "track_search"

COMPLETED = TrackStatus.COMPLETED.value
SQLITE_TRIGGERS = ("tracks_search_ai", "tracks_vocab_ai", "tracks_search_ad", "tracks_search_au", f"{VOCAB_TABLE}_ai")
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
        f"CREATE TRIGGER IF NOT EXISTS tracks_search_ai AFTER INSERT ON tracks WHEN new.status = '{COMPLETED}' "  # nosec B608
        f"BEGIN INSERT INTO {FTS_TABLE}(rowid, {cols}) VALUES (new.rowid, {new_cols}); END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_vocab_ai AFTER INSERT ON tracks BEGIN {vocab_insert} END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_search_ad AFTER DELETE ON tracks BEGIN "  # nosec B608
        f"DELETE FROM {FTS_TABLE} WHERE rowid = old.rowid; END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_search_au AFTER UPDATE OF {watched} ON tracks BEGIN "  # nosec B608
        f"DELETE FROM {FTS_TABLE} WHERE rowid = old.rowid; "
        f"INSERT INTO {FTS_TABLE}(rowid, {cols}) SELECT new.rowid, {new_cols} WHERE new.status = '{COMPLETED}'; "
        f"{vocab_insert} END",
    ]


def pg_vector_expression() -> str:
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
  IF NEW.status = '{COMPLETED}' THEN
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
        f"WHERE status = '{COMPLETED}' AND {PG_VECTOR} IS NOT NULL"
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
        if has_table(connection, PG_SEARCH_TABLE):
            for statement in pg_search_table_ddl():
                connection.exec_driver_sql(statement)
            pg_refill_search_table(connection)
        if has_table(connection, POSTINGS_TABLE):
            install_postings(connection)
        return
    for name in SQLITE_TRIGGERS:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    install_search(connection)
    cols = ", ".join(field.column for field in RANKING.values())
    connection.exec_driver_sql(f"DELETE FROM {FTS_TABLE}")  # nosec B608
    connection.exec_driver_sql(
        f"INSERT INTO {FTS_TABLE}(rowid, {cols}) SELECT rowid, {cols} FROM tracks WHERE status = '{COMPLETED}'"  # nosec B608
    )
    connection.exec_driver_sql(f"INSERT INTO {VOCAB_TRGM_TABLE}({VOCAB_TRGM_TABLE}) VALUES ('delete-all')")  # nosec B608
    connection.exec_driver_sql(f"DELETE FROM {VOCAB_TABLE}")  # nosec B608
    concat = " || ' ' || ".join(f"coalesce({field.column}, '')" for field in RANKING.values())
    connection.exec_driver_sql(
        f"INSERT OR IGNORE INTO {VOCAB_TABLE}(term) SELECT j.value FROM tracks, "  # nosec B608
        f"json_each('[\"' || replace(trim({concat}), ' ', '\",\"') || '\"]') AS j "
        "WHERE length(j.value) >= 3 AND j.value NOT GLOB '*[0-9]*'"
    )
    if has_table(connection, POSTINGS_TABLE):
        install_postings(connection)


def backfill_search_columns(connection: Connection, batch: int = 2000) -> int:
    """Fill the ``search_*`` columns of existing rows from their tags (migration 0002 and repairs)."""
    source_cols = ["title", "artist", "album", "album_artist", "composer", "label", "original_filename"]
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
            values = search_columns(dict(row), row["original_filename"])
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
