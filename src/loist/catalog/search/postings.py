"""The postings: ``search_postings``, one row per distinct word per field of every COMPLETED track, with
its stored impact (:mod:`loist.catalog.search.tuning`), kept by triggers on ``tracks`` (migrations
0005 and 0009).

Each row also carries what a walk needs to decide a track without reading its row:

- ``added`` (the track's ``created_at``), in the key after ``impact``: a list read from its best
  posting down meets tracks in the order relevance gives them (best impact, then newest added, then
  the track key), ties included;
- ``year`` and ``duration`` (0 when unknown, as the sort keys have it) and ``format``: a walk with a
  range or a format checks them in the index entry it reads anyway.

``track`` is ``tracks.rowid`` on SQLite and ``tracks.id`` on PostgreSQL. The key is (term, field,
impact, added, track); on PostgreSQL it INCLUDEs year, duration and format, so a walk with a filter
is an index-only scan.

Every name interpolated into SQL text is a module constant or comes from the ranking table, hence
the file-wide S608 exemption and the ``# nosec B608`` marks on each statement.
"""
# ruff: noqa: S608

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from loist.catalog.search.tuning import FIELD_IDS, RANKING, impact_sql
from loist.model import TrackStatus

POSTINGS_TABLE = "search_postings"
SQLITE_POSTINGS_TRIGGERS = ("tracks_postings_ai", "tracks_postings_ad", "tracks_postings_au")
COMPLETED = TrackStatus.COMPLETED.value
KEY = ("term", "field", "impact", "added", "track")
FILTERS = ("year", "duration", "format")
PG_POSTINGS_KEY = f"CONSTRAINT pk_{POSTINGS_TABLE} PRIMARY KEY ({', '.join(KEY)}) INCLUDE ({', '.join(FILTERS)})"
# The shape migration 0005 made (a downgrade of 0009 restores it).
LEGACY_KEY = ("term", "field", "impact", "track")
# PostgreSQL: the genre postings by track (migration 0010), so "has this track the genre word w" is one
# index descent (the pair walk, loist.catalog.search.pairwalk); the key needs the impact first.
PG_GENRE_INDEX = "ix_search_postings_genre_track"
PG_GENRE_INDEX_DDL = (
    f"CREATE INDEX IF NOT EXISTS {PG_GENRE_INDEX} ON {POSTINGS_TABLE} (track, term) INCLUDE (impact) "
    f"WHERE field = {FIELD_IDS['genre']}"
)
PG_LEGACY_KEY = f"CONSTRAINT pk_{POSTINGS_TABLE} PRIMARY KEY ({', '.join(LEGACY_KEY)})"
# What the rows are made of: the update trigger rewrites a track's postings when one changes.
WATCHED = ("status", *(field.column for field in RANKING.values()), "created_at", "year", "duration_s", "format")


def _sqlite_select(row: str, *, from_tracks: bool = False, legacy: bool = False) -> str:
    """The postings of one ``tracks`` row (``new``/``old`` in a trigger), or of every COMPLETED row
    (``from_tracks``: ``row`` is then the alias of ``tracks``), in the column order of :data:`KEY` +
    :data:`FILTERS` (``legacy``: of :data:`LEGACY_KEY`)."""
    parts = []
    for name, field in RANKING.items():
        column = f"{row}.{field.column}"
        source = f"tracks AS {row}, " if from_tracks else ""
        status = f" AND {row}.status = '{COMPLETED}'" if from_tracks else ""
        rest = (
            f"{row}.rowid"
            if legacy
            else f"{row}.created_at, {row}.rowid, coalesce({row}.year, 0), coalesce({row}.duration_s, 0), {row}.format"
        )
        parts.append(
            f"SELECT j.value AS term, {FIELD_IDS[name]} AS field, {impact_sql(column, field.weight)} AS impact, "  # nosec B608
            f"{rest} FROM {source}json_each('[\"' || replace({column}, ' ', '\",\"') || '\"]') AS j "
            f"WHERE {column} <> ''{status}"
        )
    return " UNION ALL ".join(parts)


def _pg_select(row: str, *, legacy: bool = False) -> str:
    """The postings of the ``tracks`` row ``row`` (``NEW``/``OLD``, or an alias), distinct."""
    values = ", ".join(
        f"({FIELD_IDS[name]}, {impact_sql(f'{row}.{field.column}', field.weight)}, {row}.{field.column})"
        for name, field in RANKING.items()
    )
    rest = (
        f"{row}.id AS track"
        if legacy
        else f"{row}.created_at AS added, {row}.id AS track, coalesce({row}.year, 0) AS year, "
        f"coalesce({row}.duration_s, 0) AS duration, {row}.format"
    )
    return (
        f"SELECT DISTINCT t.term, v.field::smallint, v.impact, {rest} "  # nosec B608
        f"FROM (VALUES {values}) AS v(field, impact, col), unnest(string_to_array(v.col, ' ')) AS t(term) "
        "WHERE v.col <> ''"
    )


def _pg_ddl(keyed: bool, legacy: bool) -> list[str]:
    # Statement-level triggers over transition tables: one INSERT ... SELECT for a whole batch of
    # tracks rather than a plpgsql call per track. PostgreSQL allows transition tables only for
    # single-event triggers without a column list, hence three triggers, and updates compare the
    # watched columns themselves.
    watched = ("status", *(field.column for field in RANKING.values())) if legacy else WATCHED
    key = LEGACY_KEY if legacy else KEY
    columns = ", ".join(key if legacy else (*KEY, *FILTERS))
    changed = f"({', '.join(f'r.{c}' for c in watched)}) IS DISTINCT FROM ({', '.join(f'o.{c}' for c in watched)})"
    match_key = " AND ".join(f"p.{name} = x.{name}" for name in key)
    select = lambda row: _pg_select(row, legacy=legacy)  # noqa: E731
    order = ", ".join(str(i + 1) for i in range(len(key)))
    bodies = {
        "insert": (
            "NEW TABLE AS new_rows",
            f"INSERT INTO {POSTINGS_TABLE}({columns}) SELECT x.* FROM new_rows AS r "  # nosec B608
            f"CROSS JOIN LATERAL ({select('r')}) AS x WHERE r.status = '{COMPLETED}' "
            f"ORDER BY {order} ON CONFLICT DO NOTHING;",
        ),
        "delete": (
            "OLD TABLE AS old_rows",
            f"DELETE FROM {POSTINGS_TABLE} AS p USING (SELECT x.* FROM old_rows AS r "  # nosec B608
            f"CROSS JOIN LATERAL ({select('r')}) AS x WHERE r.status = '{COMPLETED}') AS x "
            f"WHERE {match_key};",
        ),
        "update": (
            "OLD TABLE AS old_rows NEW TABLE AS new_rows",
            # the old postings of changed rows (r: the old row, o: the new one, compared)
            f"DELETE FROM {POSTINGS_TABLE} AS p USING (SELECT x.* FROM old_rows AS r JOIN new_rows AS o "  # nosec B608
            f"ON o.id = r.id CROSS JOIN LATERAL ({select('r')}) AS x "
            f"WHERE r.status = '{COMPLETED}' AND {changed}) AS x WHERE {match_key}; "
            # the new postings of changed rows (r: the new row, o: the old one)
            f"INSERT INTO {POSTINGS_TABLE}({columns}) SELECT x.* FROM new_rows AS r "
            f"JOIN old_rows AS o ON o.id = r.id CROSS JOIN LATERAL ({select('r')}) AS x "
            f"WHERE r.status = '{COMPLETED}' AND {changed} ORDER BY {order} ON CONFLICT DO NOTHING;",
        ),
    }
    filters = "" if legacy else ", added timestamptz NOT NULL, year integer NOT NULL, duration double precision NOT NULL, format text"
    pk = (PG_LEGACY_KEY if legacy else PG_POSTINGS_KEY) if keyed else ""
    ddl = [
        f'CREATE TABLE IF NOT EXISTS {POSTINGS_TABLE} (term text COLLATE "C" NOT NULL, field smallint NOT NULL, '
        f"impact integer NOT NULL, track uuid NOT NULL{filters}{f', {pk}' if pk else ''})",
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


def _sqlite_delete(row: str) -> str:
    """Delete the postings of the ``tracks`` row ``row`` (``old``) by their keys: one statement per
    field, ``term IN (the field's words)`` and the rest of the key equal, so each is a primary-key
    lookup (a row-value ``IN (SELECT ...)`` made SQLite scan the whole table: ~125 ms a tag edit at
    60,000 tracks)."""
    statements = []
    for name, field in RANKING.items():
        column = f"{row}.{field.column}"
        statements.append(
            f"DELETE FROM {POSTINGS_TABLE} WHERE {row}.status = '{COMPLETED}' AND {column} <> '' "  # nosec B608
            f"AND term IN (SELECT value FROM json_each('[\"' || replace({column}, ' ', '\",\"') || '\"]')) "
            f"AND field = {FIELD_IDS[name]} AND impact = {impact_sql(column, field.weight)} "
            f"AND added = {row}.created_at AND track = {row}.rowid;"
        )
    return " ".join(statements)


def _sqlite_ddl(legacy: bool) -> list[str]:
    if legacy:
        key = f"({', '.join(LEGACY_KEY)})"
        watched = ", ".join(("status", *(field.column for field in RANKING.values())))
        return [
            f"CREATE TABLE IF NOT EXISTS {POSTINGS_TABLE} (term TEXT NOT NULL, field INTEGER NOT NULL, "
            f"impact INTEGER NOT NULL, track INTEGER NOT NULL, PRIMARY KEY {key}) WITHOUT ROWID",
            f"CREATE TRIGGER IF NOT EXISTS tracks_postings_ai AFTER INSERT ON tracks WHEN new.status = '{COMPLETED}' "  # nosec B608
            f"BEGIN INSERT OR IGNORE INTO {POSTINGS_TABLE}{key} {_sqlite_select('new', legacy=True)}; END",
            f"CREATE TRIGGER IF NOT EXISTS tracks_postings_ad AFTER DELETE ON tracks WHEN old.status = '{COMPLETED}' "  # nosec B608
            f"BEGIN DELETE FROM {POSTINGS_TABLE} WHERE {key} IN ({_sqlite_select('old', legacy=True)}); END",
            f"CREATE TRIGGER IF NOT EXISTS tracks_postings_au AFTER UPDATE OF {watched} ON tracks BEGIN "  # nosec B608
            f"DELETE FROM {POSTINGS_TABLE} WHERE old.status = '{COMPLETED}' AND {key} IN "
            f"({_sqlite_select('old', legacy=True)}); INSERT OR IGNORE INTO {POSTINGS_TABLE}{key} SELECT * FROM "
            f"({_sqlite_select('new', legacy=True)}) WHERE new.status = '{COMPLETED}'; END",
        ]
    columns = f"({', '.join((*KEY, *FILTERS))})"
    return [
        f"CREATE TABLE IF NOT EXISTS {POSTINGS_TABLE} (term TEXT NOT NULL, field INTEGER NOT NULL, "
        "impact INTEGER NOT NULL, added TEXT NOT NULL, track INTEGER NOT NULL, year INTEGER NOT NULL, "
        f"duration REAL NOT NULL, format TEXT, PRIMARY KEY ({', '.join(KEY)})) WITHOUT ROWID",
        f"CREATE TRIGGER IF NOT EXISTS tracks_postings_ai AFTER INSERT ON tracks WHEN new.status = '{COMPLETED}' "  # nosec B608
        f"BEGIN INSERT OR IGNORE INTO {POSTINGS_TABLE}{columns} {_sqlite_select('new')}; END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_postings_ad AFTER DELETE ON tracks BEGIN {_sqlite_delete('old')} END",
        f"CREATE TRIGGER IF NOT EXISTS tracks_postings_au AFTER UPDATE OF {', '.join(WATCHED)} ON tracks BEGIN "  # nosec B608
        f"{_sqlite_delete('old')} INSERT OR IGNORE INTO {POSTINGS_TABLE}{columns} SELECT * FROM "
        f"({_sqlite_select('new')}) WHERE new.status = '{COMPLETED}'; END",
    ]


def postings_ddl(dialect: str, *, keyed: bool = True, legacy: bool = False) -> list[str]:
    """The postings table and the triggers that keep it (idempotent). ``keyed=False`` (PostgreSQL):
    the table without its primary key, for filling before the key is built. ``legacy``: the shape
    of migration 0005 (no ``added`` or filter columns), which a downgrade of 0009 restores."""
    return _pg_ddl(keyed, legacy) if dialect == "postgresql" else _sqlite_ddl(legacy)


def refill_postings(connection: Connection, *, legacy: bool = False) -> None:
    """Refill ``search_postings`` from the ``search_*`` columns of the COMPLETED tracks."""
    connection.exec_driver_sql(f"DELETE FROM {POSTINGS_TABLE}")  # nosec B608
    columns = ", ".join(LEGACY_KEY if legacy else (*KEY, *FILTERS))
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(
            f"INSERT INTO {POSTINGS_TABLE}({columns}) SELECT x.* FROM tracks AS r "  # nosec B608
            f"CROSS JOIN LATERAL ({_pg_select('r', legacy=legacy)}) AS x WHERE r.status = '{COMPLETED}'"
        )
    else:
        connection.exec_driver_sql(
            f"INSERT OR IGNORE INTO {POSTINGS_TABLE}({columns}) "  # nosec B608
            f"{_sqlite_select('r', from_tracks=True, legacy=legacy)}"
        )


def has_table(connection: Connection, name: str) -> bool:
    if connection.dialect.name == "postgresql":
        return connection.exec_driver_sql(f"SELECT to_regclass('{name}')").scalar() is not None
    found = connection.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.first() is not None


def drop_postings(connection: Connection) -> None:
    """Drop the postings table and its triggers (a change of shape: 0009 and its downgrade)."""
    if connection.dialect.name == "postgresql":
        for event in ("insert", "delete", "update"):
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS tracks_search_postings_{event} ON tracks")
    else:
        for name in SQLITE_POSTINGS_TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {POSTINGS_TABLE}")


def install_postings(connection: Connection, *, legacy: bool = False) -> None:
    """Create the postings table and its triggers (idempotent) and fill it (migrations 0005, 0009)."""
    dialect = connection.dialect.name
    if has_table(connection, POSTINGS_TABLE) and has_filter_columns(connection) == legacy:
        # The other shape (a migration between 0005 and 0009 rebuilding the search index with this
        # code, or a downgrade): rebuilt in the shape asked for.
        drop_postings(connection)
    # A new PostgreSQL table is filled first and keyed after: one sort instead of an index insertion per row.
    new_pg_table = dialect == "postgresql" and not has_table(connection, POSTINGS_TABLE)
    ddl = postings_ddl(dialect, keyed=not new_pg_table, legacy=legacy)
    if dialect == "sqlite":
        for name in SQLITE_POSTINGS_TRIGGERS:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    for statement in ddl:
        connection.exec_driver_sql(statement)
    refill_postings(connection, legacy=legacy)
    if new_pg_table:
        connection.exec_driver_sql(f"ALTER TABLE {POSTINGS_TABLE} ADD {PG_LEGACY_KEY if legacy else PG_POSTINGS_KEY}")
    if dialect == "postgresql" and not legacy:
        connection.exec_driver_sql(PG_GENRE_INDEX_DDL)


def has_filter_columns(connection: Connection) -> bool:
    """Whether ``search_postings`` has the shape of 0009 (``added`` and the filter columns)."""
    if connection.dialect.name == "postgresql":
        found = connection.execute(
            sa.text("SELECT 1 FROM information_schema.columns WHERE table_name = :table AND column_name = 'added'"),
            {"table": POSTINGS_TABLE},
        )
        return found.first() is not None
    columns = connection.exec_driver_sql(f"PRAGMA table_info({POSTINGS_TABLE})").all()
    return any(row[1] == "added" for row in columns)
