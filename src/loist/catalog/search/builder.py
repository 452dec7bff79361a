"""The SQL of one search for one dialect: matching, conditions, the score (:class:`Builder`).

Matching goes through the full-text index (FTS5 ``MATCH`` on SQLite, ``@@`` on the weighted
``search_vector`` with its GIN index on PostgreSQL); what the index alone cannot decide (phrase
adjacency, which of several class-D fields) is checked on the ``search_*`` token columns with the same
SQL on both engines. The score is the formula of :mod:`loist.catalog.search.tuning`, computed from a
row's token columns.

User text only ever travels as a bound parameter (and inside FTS5/tsquery expressions only as tokens
of letters, digits and symbols, quoted); the names interpolated into SQL text are module constants,
hence the file-wide S608 exemption and the ``# nosec B608`` marks.
"""
# ruff: noqa: S608

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from loist.catalog.query import ParsedQuery, Term, Token
from loist.catalog.schema import track_genres, tracks
from loist.catalog.search import tuning
from loist.catalog.search.index import COMPLETED, FTS_TABLE, PG_SEARCH_TABLE, PG_VECTOR
from loist.catalog.search.tuning import RANKING, impact_sql, token_words
from loist.catalog.text import fold, normalize_genre
from loist.model import SearchFilters


def track_column(name: str) -> sa.ColumnElement[Any]:
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


def _big(value: int) -> str:
    """An integer constant of the score's upper tiers, as a 64-bit integer on both engines (several
    TYPO ranks overflow PostgreSQL's ``integer``)."""
    return f"CAST({value} AS BIGINT)"


@functools.cache
def _impact(name: str) -> str:
    """The impact of a match in the field ``name`` of this ``tracks`` row, as SQL."""
    return impact_sql(f"tracks.{RANKING[name].column}", RANKING[name].weight)


class Builder:
    """Builds the SQL of one search for one dialect."""

    def __init__(self, dialect: str, parsed: ParsedQuery, filters: SearchFilters) -> None:
        self.dialect = dialect
        self.parsed = parsed
        self.filters = filters
        self._params = 0
        self._conditions: dict[tuple[bool, bool, bool], list[sa.ColumnElement[bool]]] = {}
        # PostgreSQL: a prefix's indexed words, when few (set by the planner): its tsquery names them
        # instead of a prefix match, which the GIN index answers several times slower.
        self.completions: dict[str, tuple[str, ...]] = {}
        self._needles: dict[str, str] = {}  # the score's needle values -> their parameters' names
        self._binds: list[sa.BindParameter[Any]] = []

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
        completions = self.completions.get(token.text) if token.prefix and not token.fuzzy else None
        if completions:  # a prefix as its indexed completions (see loist.catalog.search.plan)
            token = Token(completions[0], fuzzy=completions[1:])
        first = f"'{token.text}':" + ("*" if token.prefix else "") + label
        words = [first.rstrip(":"), *(f"'{word}'" + (f":{label}" if label else "") for word in token.fuzzy)]
        return words[0] if len(words) == 1 else "(" + " | ".join(words) + ")"

    def _ts_term(self, term: Term) -> str:
        label = RANKING[term.field].pg_label if term.field else ""
        groups = [" & ".join(self._ts_token(token, label) for token in group) for group in term.alternatives]
        return "(" + " | ".join(f"({group})" for group in groups) + ")"

    def _post_filter(self, term: Term) -> sa.ColumnElement[bool] | None:
        """What the index alone cannot decide: phrase adjacency, and (PostgreSQL) which D field."""
        columns = [track_column(RANKING[term.field].column)] if term.field else [track_column(f.column) for f in RANKING.values()]
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

    def track_key(self) -> sa.ColumnElement[Any]:
        """What identifies a track in the indexes: ``rowid`` on SQLite (FTS5, postings), ``id`` on PostgreSQL."""
        return self._rowid() if self.dialect == "sqlite" else tracks.c.id

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

    def conditions(
        self, *, indexed_ranges: bool = False, post_filters: bool = True, genres: bool = True
    ) -> list[sa.ColumnElement[bool]]:
        """The non-text conditions, status first; ``indexed_ranges``: compare ranges on the sort indexes'
        expressions on SQLite too (right for counts, which visit every match anyway); ``post_filters``:
        with the positive terms' checks the index cannot make (phrases, one of several class-D fields);
        ``genres``: with the genre filter. Built once per variant (a search asks several times)."""
        key = (indexed_ranges, post_filters, genres)
        if key not in self._conditions:
            self._conditions[key] = self._make_conditions(
                indexed_ranges=indexed_ranges, post_filters=post_filters, genres=genres
            )
        return list(self._conditions[key])

    def _make_conditions(self, *, indexed_ranges: bool, post_filters: bool, genres: bool) -> list[sa.ColumnElement[bool]]:
        # SQLite: "+status" keeps the planner off ix_tracks_status, useless for COMPLETED (nearly every
        # row) and in the way of the sort indexes (a 100K-row sort instead of an index scan).
        status: sa.ColumnElement[bool] = (
            sa.literal_column("+tracks.status", type_=sa.Text()) == sa.literal_column(f"'{COMPLETED}'")
            if self.dialect == "sqlite"
            else tracks.c.status == COMPLETED
        )
        out: list[sa.ColumnElement[bool]] = [status]
        for term in self.parsed.positive if post_filters else []:
            post = self._post_filter(term)
            if post is not None:
                out.append(post)
        for term in self.parsed.negative:
            out.append(sa.not_(self.term_condition(term)))
        return out + self._ranges(indexed_ranges) + self._formats() + (self._genres() if genres else [])

    def _ranges(self, indexed_ranges: bool) -> list[sa.ColumnElement[bool]]:
        """Year, duration and added ranges, from the query and the filters.

        SQLite: plain comparisons (NULL never matches a range), deliberately not on an indexed
        expression: without statistics SQLite would range-scan tens of thousands of rows and sort
        them instead of walking the sort index and stopping after one page. PostgreSQL has the
        statistics to choose, so there ranges compare coalesce(column, 0), the expression the sort
        indexes are built on (counts become index-only scans), with a lower bound > 0 that keeps
        unknown values out exactly as NULL does.
        """
        parsed, filters = self.parsed, self.filters
        out: list[sa.ColumnElement[bool]] = []
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
        return out

    def _formats(self) -> list[sa.ColumnElement[bool]]:
        out: list[sa.ColumnElement[bool]] = []
        # Stored canonical and lower-case by ingest. SQLite: "+format", a check on the entry or row
        # read: the only index holding it is ix_tracks_id_filters, after (id, status), where a genre
        # filter's lookup would otherwise probe once per wanted format (2 formats: twice the probes).
        fmt: sa.ColumnElement[Any] = (
            sa.literal_column("+tracks.format", type_=sa.Text()) if self.dialect == "sqlite" else tracks.c.format
        )
        for formats in (self.parsed.formats, [fold(value).strip().lstrip(".") for value in self.filters.format]):
            wanted = sorted({value for value in formats if value})
            if wanted:
                out.append(fmt.in_(wanted))
        if self.parsed.excluded_formats:
            out.append(sa.or_(tracks.c.format.is_(None), fmt.not_in(sorted(set(self.parsed.excluded_formats)))))
        return out

    def genre_keys(self) -> list[str]:
        """The genre filter's keys (``track_genres.genre_norm``), sorted; empty without one."""
        return sorted({normalize_genre(value) for value in self.filters.genre if normalize_genre(value)})

    def genre_exists(self) -> sa.ColumnElement[bool]:
        """SQLite: "this ``tracks`` row has one of the filter's genres", as a lookup of the row's own
        genres (``track_genres``' primary key), for rows found another way (the genre's postings)."""
        own = sa.select(sa.literal_column("1")).where(  # "1", not "*": the primary key covers it
            track_genres.c.track_id == tracks.c.id, track_genres.c.genre_norm.in_(self.genre_keys())
        )
        return sa.exists(own)

    def _genres(self) -> list[sa.ColumnElement[bool]]:
        genres = self.genre_keys()
        if not genres:
            return []
        if self.dialect == "postgresql":
            # "tracks.genre_keys && {...}" (migration 0004): a GIN bitmap the planner ANDs with the
            # year/format/full-text indexes before it reads any row, or a cheap check on a row it
            # reads anyway while walking a sort index. One array parameter: one statement text
            # whatever the number of genres. (Was "id = ANY(ARRAY(<ids from track_genres>))": at
            # 1M tracks ~32,000 rows per genre visited for the page and again for the count.)
            text_array = postgresql.ARRAY(sa.Text())
            keys = sa.literal_column("tracks.genre_keys", type_=text_array)  # schema.GENRE_KEYS
            wanted = sa.cast(sa.bindparam(self._name(), genres, type_=text_array), text_array)
            return [keys.op("&&")(wanted)]
        # SQLite: start from the genre index, never from a scan of tracks, and check each listed
        # track in ix_tracks_id_filters (id, status, format, year, duration_s, created_at): one index
        # entry, not the ~800-byte row. "(id, status) IN": with "tracks.id IN" alone the planner
        # prefers the unique index on id (one row, then the row itself), since the status check is
        # written "+status" to keep it off ix_tracks_status; two equalities on the covering index win.
        listed = sa.select(track_genres.c.track_id, sa.literal_column(f"'{COMPLETED}'")).where(
            track_genres.c.genre_norm.in_(genres)
        )
        return [sa.tuple_(tracks.c.id, tracks.c.status).in_(listed)]

    # -- the score (loist.catalog.search.tuning) --

    # -- the score (loist.catalog.search.tuning), written as SQL text --
    #
    # The score of a two-word query is ~100 CASE and strpos()/instr() calls; built as SQLAlchemy
    # constructs it cost ~3.5 ms of Python per search (more than PostgreSQL took to score 400
    # matches with it), and its cache key as much again. As a string with bound needles it costs
    # ~0.1 ms, and its compiled form is cached by its text (the same for every query of one shape).

    def _needle(self, value: str) -> str:
        """A bound parameter holding ``value`` (one per distinct value in a score)."""
        if value not in self._needles:
            name = self._name()
            self._needles[value] = name
            self._binds.append(sa.bindparam(name, value, type_=sa.Text()))
        return ":" + self._needles[value]

    def _found(self, column: str, needle: str) -> str:
        """The token column ``column``, padded with a space each side, contains ``needle`` (a param)."""
        find = "strpos" if self.dialect == "postgresql" else "instr"
        return f"{find}((' ' || tracks.{column} || ' '), {needle}) > 0"

    def _greatest(self, parts: list[str]) -> str:
        """The greatest of ``parts`` (PostgreSQL ``greatest``, SQLite's multi-argument scalar ``max``)."""
        if len(parts) == 1:
            return parts[0]
        return ("greatest(" if self.dialect == "postgresql" else "max(") + ", ".join(parts) + ")"

    def _expression(self, sql: str) -> sa.ColumnElement[Any]:
        binds, self._binds, self._needles = self._binds, [], {}
        return sa.type_coerce(sa.text(f"({sql})").bindparams(*binds), sa.BigInteger())

    def _token_sql(self, token: Token, fields: Sequence[str]) -> str:
        """The score of ``token`` in this ``tracks`` row: the best, over the words it may match
        (:func:`~loist.catalog.search.tuning.token_words`) and ``fields``, of the word's rank plus the
        field's impact; 0 when it matches none."""
        cases = []
        if token.prefix and not token.edits and not token.fuzzy:
            # A word being typed: a field that holds it as a prefix is checked for it whole too (one
            # instr() per field for most rows, where the prefix is not there: half the work).
            start, whole = self._needle(f" {token.text}"), self._needle(f" {token.text} ")
            for name in fields:
                column, impact = RANKING[name].column, _impact(name)
                exact = f"CASE WHEN {self._found(column, whole)} THEN {_big(tuning.EXACT)} ELSE 0 END"
                cases.append(f"CASE WHEN {self._found(column, start)} THEN {impact} + {exact} ELSE 0 END")
            return self._greatest(cases)
        for word, prefix, rank in token_words(token):
            needle = self._needle(f" {word}" if prefix else f" {word} ")
            for name in fields:
                value = f"{_impact(name)} + {_big(rank)}" if rank else _impact(name)
                cases.append(f"CASE WHEN {self._found(RANKING[name].column, needle)} THEN {value} ELSE 0 END")
        return self._greatest(cases)

    def _term_sql(self, term: Term) -> str:
        """A term's score: its best alternative, an alternative scoring the sum of its tokens' scores."""
        fields = [term.field] if term.field else list(RANKING)
        return self._greatest(
            ["(" + " + ".join(self._token_sql(token, fields) for token in group) + ")" for group in term.alternatives]
        )

    def term_score(self, term: Term) -> sa.ColumnElement[Any]:
        """A term's score in this ``tracks`` row (see :meth:`_term_sql`)."""
        return self._expression(self._term_sql(term))

    def score(self) -> sa.ColumnElement[Any]:
        """The relevance of this ``tracks`` row: the sum of the positive terms' scores, plus TOGETHER for
        each more query word matched in one field and PHRASE for all of them adjacent, in order."""
        terms = [self._term_sql(term) for term in self.parsed.positive]
        extra = self._pair() if len(self.parsed.positive) == 2 else self._together() + self._phrase()
        return self._expression(" + ".join(terms + extra))

    def _pair(self) -> list[str]:
        """Two terms (the common case): TOGETHER when both match in one field, then PHRASE when they
        are adjacent too, as one short-circuiting test (most fields lack the first term: one instr()
        each), with the phrase checked only for rows that have both words in a field."""
        first, second = self.parsed.positive
        both = [
            f"({self._in_field(first, name)} AND {self._in_field(second, name)})"
            for name in RANKING
            if first.field in (None, name) and second.field in (None, name)
        ]
        if not both:
            return []
        phrase = self._phrase()
        bonus = f"{tuning.TOGETHER} + {phrase[0]}" if phrase else str(tuning.TOGETHER)
        return [f"CASE WHEN ({' OR '.join(both)}) THEN {bonus} ELSE 0 END"]

    def _in_field(self, term: Term, name: str) -> str:
        """``term`` matches the field ``name`` (any of its alternatives; a prefix token as a prefix,
        its fuzzy words whole)."""
        column = RANKING[name].column
        groups = []
        for group in term.alternatives:
            tokens = []
            for token in group:
                words = [f" {token.text}" if token.prefix else f" {token.text} ", *(f" {w} " for w in token.fuzzy)]
                tokens.append("(" + " OR ".join(self._found(column, self._needle(word)) for word in words) + ")")
            groups.append("(" + " AND ".join(tokens) + ")")
        return "(" + " OR ".join(groups) + ")"

    def _together(self) -> list[str]:
        """TOGETHER x (the most positive terms matched in one field - 1), for two terms or more."""
        positive = self.parsed.positive
        per_field = []
        for name in RANKING:
            terms = [term for term in positive if term.field in (None, name)]
            if len(terms) < 2 or len(positive) < 2:
                continue
            per_field.append("(" + " + ".join(f"CASE WHEN {self._in_field(t, name)} THEN 1 ELSE 0 END" for t in terms) + ")")
        if not per_field:
            return []
        return [f"({self._greatest([self._greatest(per_field) + ' - 1', '0'])} * {tuning.TOGETHER})"]

    def _phrase(self) -> list[str]:
        """PHRASE when the query's words (two or more plain words) are adjacent and in order in one field."""
        positive = self.parsed.positive
        tokens = [term.alternatives[0][0] for term in positive if len(term.alternatives) == 1 and len(term.alternatives[0]) == 1]
        if len(positive) < 2 or len(tokens) != len(positive) or any(t.fuzzy or t.edits for t in tokens):
            return []
        if any(term.field for term in positive):
            return []
        needle = self._needle(" " + " ".join(token.text for token in tokens) + ("" if tokens[-1].prefix else " "))
        found = " OR ".join(self._found(field.column, needle) for field in RANKING.values())
        return [f"CASE WHEN ({found}) THEN {tuning.PHRASE} ELSE 0 END"]

    def match(self, sort: str = "relevance", *, scored: bool = True) -> Match | None:
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
            # The count reads the narrow side table (COMPLETED tracks only), and stops at tuning.COUNT_LIMIT + 1.
            side_vector = sa.literal_column(f"{PG_SEARCH_TABLE}.{PG_VECTOR}")
            side_tsq = self._tsquery(" & ".join(self._ts_term(term) for term in positive))
            side = sa.table(PG_SEARCH_TABLE, sa.column("id", sa.Uuid()))
            counted = sa.select(sa.literal_column("1")).select_from(side).where(side_vector.op("@@")(side_tsq))
            fts_count = sa.select(sa.func.count()).select_from(counted.limit(tuning.COUNT_LIMIT + 1).subquery("c"))
            return Match(
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
            f"SELECT count(*) AS n FROM (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{count_name} "  # nosec B608
            f"LIMIT {tuning.COUNT_LIMIT + 1})"
        ).bindparams(sa.bindparam(count_name, expression))
        # The walk decision (see loist.catalog.search.plan) needs to know whether the matches reach a bound that depends on
        # the table size and the page, not on tuning.COUNT_LIMIT: counted up to a bound passed at run time.
        walk_count_name = self._name()
        walk_count = sa.text(
            f"SELECT count(*) FROM (SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{walk_count_name} "  # nosec B608
            "LIMIT :walk_bound)"
        ).bindparams(sa.bindparam(walk_count_name, expression), sa.bindparam("walk_bound", type_=sa.Integer()))
        # "+m.rid": the unary plus keeps SQLite from using the join as an FTS rowid lookup, which
        # would run the full-text query once per row of ``tracks`` (seconds instead of milliseconds).
        joined = match.join(tracks, self._rowid() == sa.literal_column("+m.rid", type_=sa.Integer()))
        # For walking a sort index (see loist.catalog.search.plan): "+rowid IN (matches)" keeps SQLite from driving the plan
        # by the match list.
        walk_name = self._name()
        walk_ids = sa.text(f"SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :{walk_name}").bindparams(  # nosec B608
            sa.bindparam(walk_name, expression)
        )
        return Match(
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
class Match:
    source: sa.FromClause  # FROM for the page query (the text matches joined to tracks)
    score: sa.ColumnElement[Any]  # the relevance (a constant 0 when sorting by another key)
    rid: sa.ColumnElement[Any]  # unique per match: the relevance tie-break and the join key
    condition: sa.ColumnElement[bool]  # "this tracks row matches" (counts, facets)
    fts_count: sa.Executable  # count straight from the FTS index / side table (capped)
    page_score: sa.ColumnElement[Any] | None = None  # other sorts: the score, for the page's rows only
    walk_condition: sa.ColumnElement[bool] | None = None  # SQLite: "matches", without driving the plan
    walk_count: sa.TextClause | None = None  # SQLite: the match count up to :walk_bound


def one_of(dialect: str, key: sa.ColumnElement[Any], name: str) -> sa.ColumnElement[bool]:
    """``key`` is one of the values of the parameter ``name``, passed as ONE parameter (a JSON array on
    SQLite, an array on PostgreSQL): an expanding ``IN`` of thousands of candidates cost more Python
    time rendering its placeholders than the database spent on the lookups."""
    if dialect == "postgresql":
        return key == sa.func.any(sa.bindparam(name, type_=postgresql.ARRAY(sa.Uuid())))
    return key.in_(sa.text(f"SELECT value FROM json_each(:{name})"))  # nosec B608 (a parameter name)


def next_prefix(text: str) -> str:
    """The smallest string above every string that starts with ``text`` (a prefix as a range)."""
    return text[:-1] + chr(ord(text[-1]) + 1)
