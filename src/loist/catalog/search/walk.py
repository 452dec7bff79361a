"""The postings walk: the page of one word or prefix alone, by relevance, read from the front of the
postings instead of scoring every match (docs/search.md, "How a broad word stays fast").

Possible for one positive term made of single words or prefixes (a typo's replacements included),
with no exclusion or genre filter, sorted by relevance best first. Year, duration and added ranges
and formats are allowed: the postings carry them (:class:`Filters`), so each list is read only
through entries that pass (migration 0009; before it, checking each candidate's row measured slower
than ranking every match). The postings of each (word, field) the term may match form one *list*,
ordered by (impact, added, track), which is the page's own order once the word's rank is added
(:func:`~loist.catalog.search.tuning.token_words`: constant per list). A track's score is its best
posting, and every posting above it in that list belongs to another track that comes first; so a
track on the page is among the first ``limit + 1`` postings of the list holding its best posting,
and merging that many from every list (a track keeping its best) gives exactly the page a full
ranking gives. Past a cursor, a list may also hold
a lower posting of a track already shown (its best is above the cursor): those are dropped after
computing the candidates' scores from their rows, and a list that lost postings is read further,
up to WALK_MAX_READ postings a round.

Plain SQL text built from module constants; only bound parameters carry values (S608 exemption).
"""
# ruff: noqa: S608

from __future__ import annotations

import itertools
import json
import math
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from loist.catalog.cursor import invalid_cursor
from loist.catalog.query import ParsedQuery, Term, Token
from loist.catalog.schema import tracks
from loist.catalog.search import tuning
from loist.catalog.search.builder import Builder, next_prefix, one_of
from loist.catalog.search.postings import POSTINGS_TABLE
from loist.catalog.search.tuning import FIELD_IDS, RANKING, token_words
from loist.catalog.text import fold, index_text
from loist.model import SearchRequest

Scored = list[tuple[Any, int]]  # (track key, score)
Posting = tuple[Any, int, datetime]  # (track key, score in its list, added)
Position = tuple[int, datetime, Any]  # a cursor's (score, added, track key)


@dataclass
class Walk:
    page: Scored  # (rid, score), best first, at most limit + 1
    total: int | None  # every match, when the first page's lists held them all (a rare word): no count needed
    count: sa.Executable  # counts the matches up to COUNT_LIMIT + 1, by the words found


@dataclass
class Filters:
    """The conditions of a search that the postings carry (year, duration, added, format), as SQL on
    their columns, with the same meaning as :meth:`Builder.conditions` (unknown values never match a
    range: the postings hold them as 0)."""

    sql: str = ""  # " AND ..." or nothing
    params: dict[str, Any] = field(default_factory=dict)
    binds: list[sa.BindParameter[Any]] = field(default_factory=list)

    def add(self, condition: str, **values: tuple[Any, Any]) -> None:
        for name, (value, type_) in values.items():
            self.params[name] = value
            self.binds.append(sa.bindparam(name, type_=type_, expanding=isinstance(value, list)))
        self.sql += f" AND {condition}"


def posting_filters(builder: Builder) -> Filters | None:
    """The search's conditions as :class:`Filters`; None when it has one the postings cannot check
    (an exclusion, a genre filter)."""
    if builder.parsed.negative or builder.filters.genre:
        return None
    return carried_filters(builder)


def carried_filters(builder: Builder) -> Filters:
    """The search's conditions that the postings carry, whatever else it has (exclusions and genre
    filters are not among them: checked elsewhere)."""
    parsed, request = builder.parsed, builder.filters
    out = Filters()
    years = ([(parsed.year.min, parsed.year.max)] if parsed.year else []) + (
        [(request.year.min, request.year.max)] if request.year else []
    )
    for index, (low, high) in enumerate(years):
        out.add(f"year >= :fy{index}", **{f"fy{index}": (max(math.ceil(low) if low is not None else 1, 1), sa.Integer())})
        if high is not None:
            out.add(f"year <= :fY{index}", **{f"fY{index}": (math.floor(high), sa.Integer())})
    durations = ([(parsed.duration.min, parsed.duration.max)] if parsed.duration else []) + (
        [(request.duration.min, request.duration.max)] if request.duration else []
    )
    for index, (low, high) in enumerate(durations):
        out.add(f"duration >= :fd{index}", **{f"fd{index}": (low if low is not None and low > 0 else 1e-9, sa.Float())})
        if high is not None:
            out.add(f"duration <= :fD{index}", **{f"fD{index}": (high, sa.Float())})
    if parsed.added is not None:
        low_at, high_at = parsed.added
        if low_at is not None:
            out.add("added >= :fa", fa=(low_at, tracks.c.created_at.type))
        if high_at is not None:
            out.add("added <= :fA", fA=(high_at, tracks.c.created_at.type))
    for index, formats in enumerate((parsed.formats, [fold(v).strip().lstrip(".") for v in request.format])):
        wanted = sorted({value for value in formats if value})
        if wanted:
            out.add(f"format IN :ff{index}", **{f"ff{index}": (wanted, sa.Text())})
    if parsed.excluded_formats:
        out.add("(format IS NULL OR format NOT IN :fx)", fx=(sorted(set(parsed.excluded_formats)), sa.Text()))
    return out


def prefilter(builder: Builder, rid: str) -> Prefilter | None:
    """SQLite, one term of single words or prefixes with ranges or formats (any other conditions
    too, such as a genre filter or an exclusion): "the match ``rid`` has a posting of the term that
    passes them", from the postings alone. The full-text index lists every match of the term, and
    reading each one's ~800-byte row to check its year and format cost ~1 us a match (``garden``
    and a year range: 7,714 rows, ~8 ms at 100K tracks); the postings' primary key starts with the
    term and carries the year, duration, added and format, so the matches that pass come from one
    range of narrow index entries (~0.8 ms) and only their rows are read. The same matches: a
    walkable term's tracks are exactly those holding one of its words in a field it may match
    (what the walk relies on), and the carried conditions mean on a posting what they mean on the
    row. ``rid`` names the match's rowid; ``+rid``: checked on each match, never driving the plan."""
    parsed = builder.parsed
    if builder.dialect != "sqlite" or not walkable(parsed):
        return None
    filters = carried_filters(builder)
    if not filters.sql:
        return None
    term = parsed.positive[0]
    words, binds = [], list(_filter_binds(filters))
    spelled = {(word, prefix) for (token,) in term.alternatives for word, prefix, _ in token_words(token)}
    for word, prefix in sorted(spelled):
        if not prefix and (word, True) in spelled:
            continue  # within its own prefix's range
        low = f"pw{len(binds)}"
        binds.append(sa.bindparam(low, word, type_=sa.Text()))
        if prefix:
            high = f"pw{len(binds)}"
            binds.append(sa.bindparam(high, next_prefix(word), type_=sa.Text()))
            words.append(f"(term >= :{low} AND term < :{high})")
        else:
            words.append(f"term = :{low}")
    field_sql = f" AND field = {FIELD_IDS[term.field]}" if term.field else ""
    where = f"({' OR '.join(words)}){field_sql}"
    # Worth it only when the filters are selective: the share of a sample of the term's postings
    # that passes them (a match passes as its postings do).
    sample = sa.text(
        f"SELECT count(*) AS n, total(CASE WHEN 1{filters.sql} THEN 1 ELSE 0 END) AS passed FROM ("  # nosec B608
        f"SELECT year, duration, format, added FROM {POSTINGS_TABLE} WHERE {where} LIMIT {tuning.PREFILTER_SAMPLE})"
    ).bindparams(*binds)
    listed = sa.text(f"SELECT track FROM {POSTINGS_TABLE} WHERE {where}{filters.sql}").bindparams(*binds)  # nosec B608
    return Prefilter(sa.literal_column(f"+{rid}", type_=sa.Integer()).in_(listed), sample, tuning.PREFER_PREFILTER)


@dataclass
class Prefilter:
    """A condition the postings can decide before a row is read, and the statement deciding whether
    it pays (one row: ``n`` postings looked at, ``passed`` of them passing)."""

    condition: sa.ColumnElement[bool]
    sample: sa.TextClause
    share: float  # it pays when at most this share of the ``n`` passes

    async def pays(self, conn: AsyncConnection) -> bool:
        row = (await conn.execute(self.sample)).one()
        return bool(row.n) and row.passed <= self.share * row.n


def genre_candidates(builder: Builder) -> Prefilter | None:
    """SQLite, a genre filter without text, with ranges or formats: "this ``tracks`` row has a genre
    posting of one of the filter's genres that passes them", from the postings alone; the caller
    still checks the row's genres exactly (:meth:`Builder.genre_exists`). A track's genre postings
    are the words of its genre names (``search_genre``), written from the same names as its
    ``track_genres`` keys and with the same fold (``loist.catalog.text``; a test holds the two
    together), so a track with a key holds a genre posting of each of the key's words: one word per
    key finds every such track, and a few others. Cheaper than listing the genre's tracks and
    checking each one's year and format in ``ix_tracks_id_filters`` (one probe by id each): two
    genres and a year range at 100K tracks, 6,409 probes for 543 matches, ~6 ms against ~2. None when
    it does not apply (text, no genre filter, no range or format, a key without words)."""
    keys = builder.genre_keys()
    if builder.dialect != "sqlite" or builder.parsed.positive or not keys:
        return None
    filters = carried_filters(builder)
    words = [index_text(key).split() for key in keys]
    if not filters.sql or not all(words):
        return None
    # Any of a key's words will do; the longest ("jpop" of "j-pop") is usually the rarest.
    chosen = sorted({max(each, key=lambda word: (len(word), word)) for each in words})
    where = f"term IN :gw AND field = {FIELD_IDS['genre']}{filters.sql}"
    binds = [sa.bindparam("gw", chosen, type_=sa.Text(), expanding=True), *_filter_binds(filters)]
    listed = sa.text(f"SELECT track FROM {POSTINGS_TABLE} WHERE {where}").bindparams(*binds)  # nosec B608
    # Worth it only when the postings that pass are few beside the genre's listed tracks (a word
    # shared with other genres, unselective ranges): both counted, the postings only that far.
    share = tuning.PREFER_GENRE_POSTINGS
    sample = sa.text(
        "WITH k(n) AS MATERIALIZED (SELECT count(*) FROM track_genres WHERE genre_norm IN :gk) "  # nosec B608
        f"SELECT n, (SELECT count(*) FROM (SELECT 1 FROM {POSTINGS_TABLE} WHERE {where} "
        f"LIMIT (SELECT CAST(n * {share} AS INTEGER) + 1 FROM k))) AS passed FROM k"
    ).bindparams(*binds, sa.bindparam("gk", keys, type_=sa.Text(), expanding=True))
    return Prefilter(builder.track_key().in_(listed), sample, share)


def walkable(parsed: ParsedQuery) -> bool:
    """One positive term of single words or prefixes (no phrase, no word split into parts)."""
    if len(parsed.positive) != 1:
        return False
    term = parsed.positive[0]
    return not term.phrase and all(len(group) == 1 for group in term.alternatives)


async def completions(conn: AsyncConnection, prefix: str, limit: int) -> list[str]:
    """The indexed words starting with ``prefix`` (at most ``limit``): one index probe per word
    (a loose index scan over the postings' leading column), however many tracks hold each word."""
    query = sa.text(
        f"WITH RECURSIVE w(term) AS ("  # nosec B608
        f"SELECT (SELECT min(term) FROM {POSTINGS_TABLE} WHERE term >= :low AND term < :high) "
        f"UNION ALL SELECT (SELECT min(term) FROM {POSTINGS_TABLE} WHERE term > w.term AND term < :high) "
        "FROM w WHERE w.term IS NOT NULL) "
        "SELECT term FROM w WHERE term IS NOT NULL LIMIT :limit"
    ).bindparams(low=prefix, high=next_prefix(prefix), limit=limit)
    return [row[0] for row in (await conn.execute(query)).all()]


async def term_words(conn: AsyncConnection, term: Term) -> list[tuple[str, int]] | None:
    """The indexed words a term of single words or prefixes can match (a prefix's completions, a
    typo's replacements), each with its rank (:func:`~loist.catalog.search.tuning.token_words`: a
    word being typed found whole ranks above its longer completions); None when a prefix has more
    than WALK_MAX_WORDS completions."""
    words: dict[str, int] = {}
    for (token,) in term.alternatives:
        for word, prefix, rank in token_words(token):
            found = await completions(conn, word, tuning.WALK_MAX_WORDS + 1) if prefix else [word]
            for each in found:
                words[each] = max(words.get(each, rank), rank)
        if len(words) > tuning.WALK_MAX_WORDS:
            return None
    return list(words.items())


def words_count(builder: Builder, term: Term, words: list[str], filters: Filters | None = None) -> sa.Executable:
    """Count the tracks holding any of ``words`` (a term's words, its prefix's completions included)
    and meeting ``filters``.

    By exact words rather than by prefix: PostgreSQL's GIN index answers ``'soldier' | 'soldiers'``
    in 1.4 ms and ``'soldi':*`` in 6.8 ms (100K tracks). A field term (``genre:rock``) counts that
    field's postings: its class-D field cannot be told apart in the full-text index without reading
    the rows; so does a term with filters (the postings carry them: counting through the text index
    and then each match's row cost 30 ms for ``angel duration:..3:00`` at 100K). A track has at most
    one posting per word in a field, hence the inner bound."""
    count = _words_count(builder, term, words, filters)
    if builder.dialect != "postgresql" or not words:
        return count
    # Capped cheaply: a track has at most one posting per (word, field), so one list with more than
    # COUNT_LIMIT postings (passing the filters) means more than COUNT_LIMIT matches, found by reading
    # COUNT_LIMIT + 1 index entries (an index-only scan, ~0.1 ms) instead of counting the matches
    # (a common word's count read ~9,000 rows of the text index's table, 2.5 ms at 100K tracks).
    fields = [FIELD_IDS[term.field]] if term.field else list(FIELD_IDS.values())
    lists = list(itertools.product(words, fields))
    extra = filters.sql if filters is not None else ""
    probe = sa.text(
        f"EXISTS (SELECT 1 FROM unnest(:probe_terms, :probe_fields) AS w(term, field) WHERE EXISTS ("  # nosec B608
        f"SELECT 1 FROM {POSTINGS_TABLE} AS p WHERE p.term = w.term AND p.field = w.field{extra} "
        f"OFFSET {tuning.COUNT_LIMIT}))"
    ).bindparams(
        sa.bindparam("probe_terms", [word for word, _ in lists], type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("probe_fields", [field for _, field in lists], type_=postgresql.ARRAY(sa.Integer())),
        *_filter_binds(filters),
    )
    capped = sa.literal_column(str(tuning.COUNT_LIMIT + 1), sa.Integer())
    return sa.select(sa.case((probe, capped), else_=as_scalar(count)).label("n"))


def _filter_binds(filters: Filters | None) -> list[sa.BindParameter[Any]]:
    if filters is None:
        return []
    return [sa.bindparam(b.key, filters.params[b.key], type_=b.type, expanding=b.expanding) for b in filters.binds]


def array_params(columns: dict[str, tuple[list[Any], Any]], params: dict[str, Any],
                 binds: list[sa.BindParameter[Any]]) -> None:
    """Each column of a LATERAL walk as the array parameter ``l_<name>`` that ``unnest`` reads
    (PostgreSQL), added to ``params`` with its typed bind."""
    for name, (values, type_) in columns.items():
        params[f"l_{name}"] = values
        binds.append(sa.bindparam(f"l_{name}", type_=postgresql.ARRAY(type_)))


def as_scalar(count: sa.Executable) -> sa.ScalarSelect[Any]:
    """A count statement (a SELECT, or SQL text of one integer named ``n``) as a scalar subquery."""
    if isinstance(count, sa.TextClause):
        return sa.select(count.columns(sa.column("n", sa.Integer())).subquery("n").c.n).scalar_subquery()
    return count.scalar_subquery()  # type: ignore[attr-defined,no-any-return]


def _words_count(builder: Builder, term: Term, words: list[str], filters: Filters | None) -> sa.Executable:
    limit = tuning.COUNT_LIMIT + 1
    if term.field or (filters is not None and filters.sql):
        field_sql = f" AND field = {FIELD_IDS[term.field]}" if term.field else ""
        per_track = max(1, len(words)) * (1 if term.field else len(RANKING))
        extra = filters.sql if filters is not None else ""
        return sa.text(
            f"SELECT count(*) AS n FROM (SELECT DISTINCT track FROM (SELECT track FROM {POSTINGS_TABLE} "  # nosec B608
            f"WHERE term IN :words{field_sql}{extra} LIMIT {limit * per_track}) AS p LIMIT {limit}) AS c"
        ).bindparams(sa.bindparam("words", words or [""], expanding=True), *_filter_binds(filters))
    exact = Token(words[0], fuzzy=tuple(words[1:])) if words else term.alternatives[0][0]
    parsed = replace(builder.parsed, terms=[replace(term, alternatives=((exact,),))])
    match = Builder(builder.dialect, parsed, builder.filters).match(scored=False)
    if match is None:  # cannot happen: the term has a word
        raise LookupError("a walked term has no text")
    return match.fts_count


class _Lists:
    """The postings lists of one walk, one per (word, field), each read from its best posting down
    (past the cursor's position, if any), keeping to the filters the postings carry."""

    def __init__(
        self,
        builder: Builder,
        words: list[tuple[str, int]],
        fields: list[str],
        after: Position | None,
        filters: Filters,
    ):
        self.lists = [(word, rank, field) for (word, rank), field in itertools.product(words, fields)]
        self.track_type = builder.track_key().type
        self.base: dict[str, Any] = dict(filters.params)
        self.binds: list[sa.BindParameter[Any]] = list(filters.binds)
        self.where = filters.sql
        self.after = after
        self.lateral = builder.dialect == "postgresql"
        if after is not None:
            self.base.update(cursor_added=after[1], cursor_rid=after[2])
            self.binds += [sa.bindparam("cursor_added", type_=tracks.c.created_at.type),
                           sa.bindparam("cursor_rid", type_=self.track_type)]

    def _heads(self, depths: dict[int, int]) -> tuple[sa.TextClause, dict[str, Any]]:
        """The first ``depth`` postings of each list: one small SELECT per list, as plain SQL text
        (SQLAlchemy constructs for dozens of subqueries cost more Python time than the index reads)."""
        if self.lateral:
            return self._heads_lateral(depths)
        parts, params, more = [], dict(self.base), list(self.binds)
        for index, depth in depths.items():
            word, rank, field = self.lists[index]
            params[f"w{index}"], params[f"d{index}"] = word, depth
            more += [sa.bindparam(f"w{index}", type_=sa.Text()), sa.bindparam(f"d{index}", type_=sa.Integer())]
            past = ""
            if self.after is not None:  # (impact + rank, added, track) below the cursor's (score, added, track)
                params[f"s{index}"] = self.after[0] - rank
                more.append(sa.bindparam(f"s{index}", type_=sa.BigInteger()))
                past = f" AND (impact, added, track) < (:s{index}, :cursor_added, :cursor_rid)"
            parts.append(
                f"SELECT * FROM (SELECT track, impact + {rank} AS score, added, {index} AS list "  # nosec B608
                f"FROM {POSTINGS_TABLE} WHERE term = :w{index} AND field = {FIELD_IDS[field]}{self.where}{past} "
                f"ORDER BY impact DESC, added DESC, track DESC LIMIT :d{index}) AS l{index}"
            )
        statement = sa.text(" UNION ALL ".join(parts)).bindparams(*more).columns(
            sa.column("track", self.track_type), sa.column("score", sa.BigInteger()),
            sa.column("added", tracks.c.created_at.type), sa.column("list", sa.Integer()),
        )
        return statement, params

    def _heads_lateral(self, depths: dict[int, int]) -> tuple[sa.TextClause, dict[str, Any]]:
        """PostgreSQL: the same, as one LATERAL join over arrays of (word, field, rank, depth): one
        statement text however many lists (asyncpg prepares it once per connection), planned in
        ~0.2 ms where the UNION ALL of a common prefix's 18 lists took 1.6 ms to plan."""
        indexes = list(depths)
        params, more = dict(self.base), list(self.binds)
        columns = {
            "term": ([self.lists[i][0] for i in indexes], sa.Text()),
            "field": ([FIELD_IDS[self.lists[i][2]] for i in indexes], sa.Integer()),
            "rank": ([self.lists[i][1] for i in indexes], sa.BigInteger()),
            "depth": ([depths[i] for i in indexes], sa.Integer()),
            "list": (indexes, sa.Integer()),
        }
        past = ""
        if self.after is not None:  # (impact + rank, added, track) below the cursor's (score, added, track)
            columns["below"] = ([self.after[0] - self.lists[i][1] for i in indexes], sa.BigInteger())
            past = " AND (p.impact, p.added, p.track) < (w.below, :cursor_added, :cursor_rid)"
        array_params(columns, params, more)
        sql = (
            f"SELECT l.track, l.impact + w.rank AS score, l.added, w.list "  # nosec B608
            f"FROM unnest({', '.join(f':l_{name}' for name in columns)}) AS w({', '.join(columns)}) "
            f"CROSS JOIN LATERAL (SELECT p.track, p.impact, p.added FROM {POSTINGS_TABLE} AS p "
            f"WHERE p.term = w.term AND p.field = w.field{self.where}{past} "
            "ORDER BY p.impact DESC, p.added DESC, p.track DESC LIMIT w.depth) AS l"
        )
        statement = sa.text(sql).bindparams(*more).columns(
            sa.column("track", self.track_type), sa.column("score", sa.BigInteger()),
            sa.column("added", tracks.c.created_at.type), sa.column("list", sa.Integer()),
        )
        return statement, params

    async def read(self, conn: AsyncConnection, depths: dict[int, int]) -> dict[int, list[Posting]]:
        """The postings of the lists in ``depths``, each list to its depth."""
        statement, params = self._heads(depths)
        read: dict[int, list[Posting]] = {index: [] for index in depths}
        for rid, score, added, index in (await conn.execute(statement, params)).all():
            read[index].append((rid, int(score), added))
        return read


async def walk_page(
    conn: AsyncConnection, builder: Builder, request: SearchRequest, cursor: list[Any] | None, filters: Filters
) -> Walk | None:
    """The page's ``(rid, score)`` (up to ``limit + 1``, in order) read from the front of the
    postings, and the number of matches when the lists were read to their ends; or None when this
    search cannot be answered that way (see the module's docstring)."""
    term = builder.parsed.positive[0]  # the planner checked: walkable, and no condition the postings lack
    words = await term_words(conn, term)
    if words is None:
        return None
    count = words_count(builder, term, [word for word, _ in words], filters)
    if not words:
        return Walk([], 0, count)
    after = None if cursor is None else _position(cursor, builder.dialect == "sqlite")
    lists = _Lists(builder, words, [term.field] if term.field else list(RANKING), after, filters)
    need = request.limit + 1
    if after is None:
        read = await lists.read(conn, dict.fromkeys(range(len(lists.lists)), need))
        found: list[Posting] | None = [posting for rows in read.values() for posting in rows]
        complete = all(len(rows) < need for rows in read.values())  # every list read to its end: all the matches
    else:
        found, complete = await _past_cursor(conn, builder, term, lists, after, need), False
    if found is None:
        return None
    best: dict[Any, tuple[int, datetime]] = {}
    for rid, score, added in found:
        best[rid] = max(best.get(rid, (score, added)), (score, added))
    ranked = sorted(((score, added, rid) for rid, (score, added) in best.items()), reverse=True)
    return Walk([(rid, score) for score, _, rid in ranked[:need]], len(best) if complete else None, count)


def _position(cursor: list[Any], sqlite: bool) -> Position:
    """The cursor's (score, added, track key)."""
    try:
        return int(cursor[0]), _utc(datetime.fromisoformat(cursor[1])), int(cursor[2]) if sqlite else uuid.UUID(cursor[2])
    except (TypeError, ValueError) as exc:
        raise invalid_cursor() from exc


async def _past_cursor(
    conn: AsyncConnection, builder: Builder, term: Term, lists: _Lists, after: Position, need: int
) -> list[Posting] | None:
    """The candidates past the cursor with their own scores (computed from their rows, once each),
    tracks already shown dropped; a list that lost postings is read further. None: too far to read."""
    track_key = builder.track_key()
    checked = (
        sa.select(track_key, builder.term_score(term))
        .select_from(tracks)
        .where(one_of(builder.dialect, track_key, "candidates"))
    )
    sqlite = builder.dialect == "sqlite"
    depths = dict.fromkeys(range(len(lists.lists)), need)
    read: dict[int, list[Posting]] = {}
    passed: dict[Any, int | None] = {}  # rid -> its score; None: shown on an earlier page
    added: dict[Any, datetime] = {}
    while True:
        read.update(await lists.read(conn, depths))
        new = list({rid for index in depths for rid, _, _ in read[index] if rid not in passed})
        for index in depths:
            added.update((rid, when) for rid, _, when in read[index])
        if new:
            listed = json.dumps(new) if sqlite else new
            ok = {rid: int(score) for rid, score in (await conn.execute(checked, {"candidates": listed})).all()}
            for rid in new:
                score = ok.get(rid)
                # Drop tracks already shown (their best posting is above the cursor).
                passed[rid] = None if score is None or (score, _utc(added[rid]), rid) >= after else score
        kept = {index: [p for p in rows if passed[p[0]] is not None] for index, rows in read.items()}
        short = [index for index, rows in read.items() if len(rows) == depths.get(index, -1) and len(kept[index]) < need]
        if not short:
            return [(rid, passed[rid], when) for rows in kept.values() for rid, _, when in rows]  # type: ignore[misc]
        deeper = _deeper(read, kept, depths, short, need)
        if deeper is None:
            return None
        depths = deeper


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _deeper(
    read: dict[int, list[Posting]], kept: dict[int, list[Posting]], depths: dict[int, int], short: list[int], need: int
) -> dict[int, int] | None:
    """How far to read the short lists, as far as the observed share of tracks not yet shown says is
    needed; None when that is too far (ranking every match is then cheaper)."""
    total_read = sum(len(rows) for rows in read.values())
    rate = sum(len(rows) for rows in kept.values()) / total_read if total_read else 0.0
    wanted = {index: max(depths[index] * 2, math.ceil(need / rate * 1.5)) if rate else 0 for index in short}
    if not rate or sum(wanted.values()) > tuning.WALK_MAX_READ:
        return None
    return wanted
