"""Planning one pass of a search: which path answers it, decided before any page row is read.

- **The postings walk** (:mod:`loist.catalog.search.walk`): one word or prefix alone, by relevance
  best first, reads its page from the front of the postings instead of scoring every match.
- **The sort-index walk** (SQLite): text alone sorted by another key, with many matches, walks the
  sort index and tests each row against the match list (the first page's rows come early) instead of
  sorting every match. The answer is the same either way; the choice uses the (bounded) match count
  and the table size.
- Otherwise the matches are found through the full-text index, filtered, scored and sorted.

The total is counted on the first page and carried by the cursor: deep pages cost one query. When the
page must visit every match anyway it counts them in the same pass with a window (:attr:`Plan.window`);
otherwise a separate, bounded count (:attr:`Plan.count`) runs (on PostgreSQL on a second connection,
at the same time as the page).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loist.catalog.query import ParsedQuery, Term
from loist.catalog.schema import tracks
from loist.catalog.search import pairwalk, tuning, walk
from loist.catalog.search.builder import Builder, Match
from loist.catalog.search.paging import (
    Position,
    SortKeys,
    decode_search_cursor,
    key_size,
    request_fingerprint,
    sort_keys,
)
from loist.model import SearchRequest


@dataclass
class Plan:
    """How one pass runs. Phase 1 selects the page's keys (``rid``, ``score``, the sort keys) from
    ``source`` where ``where`` holds; phase 2 reads the page's full rows."""

    builder: Builder
    sort: str
    order: str
    fingerprint: str
    conditions: list[sa.ColumnElement[bool]]  # the non-text conditions, the status check first
    position: Position | None = None  # where the cursor says this page starts
    total: int | None = None  # known already: carried by the cursor, or found on the way
    capped: bool = False  # ... and a lower bound
    walked: walk.Scored | None = None  # the page's (rid, score) read from the postings
    walk_count: sa.Executable | None = None  # counts the matches by the words the walk found
    match: Match | None = None
    keys: SortKeys = field(default_factory=list)
    source: sa.FromClause = tracks
    rid: sa.ColumnElement[Any] = field(default_factory=lambda: sa.literal_column("0"))
    score: sa.ColumnElement[Any] = field(default_factory=lambda: sa.literal_column("0", type_=sa.Integer()))
    where: list[sa.ColumnElement[bool]] = field(default_factory=list)
    index_walk: bool = False  # SQLite: the sort index is walked
    window: bool = False  # the page counts the matches too (a window over every match)
    postings_first: sa.ColumnElement[bool] | None = None  # SQLite: checked in the postings first (walk.Prefilter)

    @property
    def matched(self) -> list[sa.ColumnElement[bool]]:
        """'This ``tracks`` row matches': for counts and facets."""
        return ([] if self.match is None else [self.match.condition]) + self.conditions

    def count(self) -> sa.Executable:
        """The statement counting the matches, up to COUNT_LIMIT + 1."""
        if self.walk_count is not None:
            return self.walk_count
        return count_statement(self.builder, self.match, self.conditions)


async def plan_pass(
    conn: AsyncConnection, dialect: str, request: SearchRequest, parsed: ParsedQuery, engine: AsyncEngine | None = None
) -> Plan:
    """Decide how ``request`` (with the query ``parsed``) runs; the walk's page is read on the way
    (and, for the pair walk, the count at the same time on a connection of ``engine``)."""
    builder = Builder(dialect, parsed, request.filters)
    order = request.order or ("desc" if request.sort in ("relevance", "added") else "asc")
    plan = Plan(builder, request.sort, order, request_fingerprint(request, order), builder.conditions())
    if request.cursor:
        size = key_size(plan.sort, parsed.has_text)
        plan.position = decode_search_cursor(request.cursor, plan.fingerprint, size)
        plan.total, plan.capped = plan.position.total, plan.position.capped
    await _walk_postings(conn, plan, request)
    if plan.walked is None and dialect == "postgresql":
        await _walk_pair(conn, plan, request, engine)
        await _complete_prefixes(conn, builder)
    plan.match = builder.match(plan.sort, scored=plan.walked is None)
    plan.keys = sort_keys(dialect, plan.sort, plan.match)
    await _postings_first(conn, plan)
    _phase_one(plan)
    await _walk_sort_index(conn, plan, request.limit)
    plan.window = _window(plan, request)
    return plan


async def _walk_postings(conn: AsyncConnection, plan: Plan, request: SearchRequest) -> None:
    """Relevance of one word or prefix, best first: read the best postings instead of scoring every
    match. (Best first only: a track's score is its best posting, which a walk from the bottom meets
    last.) Otherwise, on PostgreSQL, such a term is still counted by its prefix's completions."""
    builder, parsed = plan.builder, plan.builder.parsed
    # One term of single words or prefixes, and only conditions the postings carry (ranges, formats):
    filters = walk.posting_filters(builder) if walk.walkable(parsed) else None
    alone = filters is not None and not filters.sql
    if tuning.WALK_POSTINGS and filters is not None and plan.sort == "relevance" and plan.order == "desc":
        key = None if plan.position is None else plan.position.key
        walked = await walk.walk_page(conn, builder, request, key, filters)
        if walked is not None:
            plan.walked, plan.walk_count = walked.page, walked.count
            if plan.total is None and walked.total is not None:
                plan.total = walked.total
    elif builder.dialect == "postgresql" and plan.total is None and alone:
        # Sorted by another key: count by the prefix's completions all the same (see walk.words_count).
        term = parsed.positive[0]
        if any(token.prefix for (token,) in term.alternatives):
            words = await walk.term_words(conn, term)
            if words is not None:
                plan.walk_count = walk.words_count(builder, term, [word for word, _ in words])
                _known_completions(builder, term, words)


async def _walk_pair(conn: AsyncConnection, plan: Plan, request: SearchRequest, engine: AsyncEngine | None) -> None:
    """PostgreSQL, the first page of a ``genre:`` word beside a free word (``genre:rock volcano``),
    best first: read from the free word's postings (:mod:`loist.catalog.search.pairwalk`). The total
    is counted the general way (``count_statement``), on a second connection while the walk runs
    (the two use both cores), unless the walk read every match. Only for a free word with many
    postings (WALK_PAIR_MIN_TOP): for the others ranking every match is faster."""
    builder = plan.builder
    if not (tuning.WALK_PAIRS and plan.position is None and plan.sort == "relevance" and plan.order == "desc"):
        return
    terms = pairwalk.pair_terms(builder.parsed)
    filters = walk.posting_filters(builder) if terms is not None else None
    if terms is None or filters is None:
        return
    words = await walk.term_words(conn, terms[1])
    if words is None:
        return
    _known_completions(builder, terms[1], words)
    if await pairwalk.top_titles(conn, [word for word, _ in words]) < tuning.WALK_PAIR_MIN_TOP:
        return  # a typical word: ranking every match is faster (docs/search.md)
    counting = None
    if engine is not None and plan.total is None:
        statement = count_statement(builder, builder.match(plan.sort, scored=False), plan.conditions)
        counting = asyncio.create_task(count_on_own_connection(engine, statement))
    try:
        walked = await pairwalk.pair_page(conn, builder, request.limit, filters, words)
    finally:
        total = None if counting is None else await counting
    if walked is not None:
        plan.walked = walked.page
        if plan.total is None:
            plan.total = walked.total if walked.total is not None else total


async def count_on_own_connection(engine: AsyncEngine, count: sa.Executable) -> int:
    """Run a count statement on a connection of its own (at the same time as the page)."""
    async with engine.connect() as other:
        if count.get_execution_options().get("loist_bitmap_only"):
            await other.execute(sa.text("SET LOCAL enable_seqscan = off"))
            await other.execute(sa.text("SET LOCAL enable_indexscan = off"))
        else:  # no BEGIN and ROLLBACK round trips (see loist.catalog.search.run.run_search)
            await other.execution_options(isolation_level="AUTOCOMMIT")
        return int((await other.execute(count)).scalar_one())


def _known_completions(builder: Builder, term: Term, words: list[tuple[str, int]]) -> None:
    """A one-token term being typed: the indexed words a walk looked up for it are its completions
    in the tsquery too (:func:`_complete_prefixes` then does not look them up again)."""
    if len(term.alternatives) == 1 and term.alternatives[0][0].prefix:
        builder.completions[term.alternatives[0][0].text] = tuple(word for word, _ in words)


async def _complete_prefixes(conn: AsyncConnection, builder: Builder) -> None:
    """PostgreSQL, text found through the GIN index: each word being typed as its indexed words (up
    to WALK_MAX_WORDS, from the postings' leading column) in the tsquery. The GIN index answers
    ``'rock':D & ('volcano' | 'volcanoes')`` 3-5x faster than ``'rock':D & 'volcano':*`` at 1M
    tracks (a prefix is a partial match: every entry it covers is read whole, and none can skip);
    the score still treats the word as a prefix, so the answer is the same."""
    for term in builder.parsed.positive:
        for group in term.alternatives:
            for token in group:
                if token.prefix and not token.fuzzy and token.text not in builder.completions:
                    found = await walk.completions(conn, token.text, tuning.WALK_MAX_WORDS + 1)
                    if 0 < len(found) <= tuning.WALK_MAX_WORDS:
                        builder.completions[token.text] = tuple(found)


async def _postings_first(conn: AsyncConnection, plan: Plan) -> None:
    """SQLite: a filter the postings decide before a row is read, when it is selective enough to pay
    (:func:`walk.genre_candidates` without text, :func:`walk.prefilter` with one term)."""
    if plan.walked is not None:
        return
    found = walk.genre_candidates(plan.builder) if plan.match is None else walk.prefilter(plan.builder, "m.rid")
    if found is not None and await found.pays(conn):
        plan.postings_first = found.condition


def _phase_one(plan: Plan) -> None:
    """Where the page's keys come from: every track, or the text matches joined to their rows."""
    match = plan.match
    if match is None:
        plan.source, plan.rid, plan.where = tracks, plan.builder.track_key(), plan.conditions
        if plan.postings_first is not None:  # SQLite: the genre's postings first, then each found row's genres
            plan.where = plan.builder.conditions(genres=False) + [plan.postings_first, plan.builder.genre_exists()]
        return
    plan.source, plan.rid, plan.score = match.source, match.rid, match.score
    if plan.builder.dialect == "postgresql":
        plan.where = [match.condition, *plan.conditions]
        return
    # SQLite: the FTS5 index holds only COMPLETED tracks: [0], the status check, is implied by the
    # join; a term's ranges and formats are first checked in its postings (walk.prefilter).
    plan.where = plan.conditions[1:] + ([] if plan.postings_first is None else [plan.postings_first])


async def _walk_sort_index(conn: AsyncConnection, plan: Plan, limit: int) -> None:
    """SQLite, text alone sorted by another key, many matches: walk the sort index and test each row
    against the match list instead of sorting every match."""
    match = plan.match
    if (
        plan.builder.dialect != "sqlite"
        or match is None
        or match.walk_condition is None
        or match.walk_count is None
        or plan.sort == "relevance"
        or len(plan.conditions) != 1
    ):
        return
    size = int((await conn.execute(sa.text("SELECT coalesce(max(rowid), 0) FROM tracks"))).scalar_one())
    threshold = tuning.WALK_FACTOR * (limit + 1) * size
    # Count far enough for both the decision and the (capped) total, no further.
    bound = max(tuning.COUNT_LIMIT + 1, math.isqrt(threshold) + 1)
    matches = int((await conn.execute(match.walk_count, {"walk_bound": bound})).scalar_one())
    plan.index_walk = matches * matches >= threshold
    if plan.index_walk:
        plan.source, plan.where = tracks, [plan.conditions[0], match.walk_condition]
        plan.rid = plan.builder.track_key()
        if plan.total is None:
            plan.total = matches


def _window(plan: Plan, request: SearchRequest) -> bool:
    """Whether the page counts the matches (when it visits every match anyway: text ranked in full;
    on SQLite also text sorted by another key and a genre filter driving the plan)."""
    if plan.walked is not None or request.cursor:
        return False
    if plan.builder.dialect == "sqlite":
        return not plan.index_walk and (plan.match is not None or bool(request.filters.genre))
    # Text ranked by relevance: the page scores every match anyway, so it counts them too (one
    # pass, rather than a second scan competing for the same two cores).
    # (Not for a genre filter alone: its GIN bitmap, ANDed with the other conditions' indexes, lets
    # the page stop early, and a window would make it visit every match: 10 ms against 624 at 1M.)
    return plan.match is not None and plan.sort == "relevance"


def count_statement(builder: Builder, match: Match | None, conditions: list[sa.ColumnElement[bool]]) -> sa.Executable:
    """The statement counting the matches, up to COUNT_LIMIT + 1."""
    if match is not None and len(conditions) == 1:
        return match.fts_count
    counted = ([] if match is None else [match.condition]) + conditions
    parsed, filters = builder.parsed, builder.filters
    if builder.dialect == "sqlite" and (parsed.year or parsed.duration or filters.year or filters.duration):
        counted = ([] if match is None else [match.condition]) + builder.conditions(indexed_ranges=True)
    bounded = sa.select(sa.literal_column("1")).select_from(tracks).where(*counted).limit(tuning.COUNT_LIMIT + 1)
    statement = sa.select(sa.func.count()).select_from(bounded.subquery("c"))
    if builder.dialect == "postgresql" and match is not None:
        # Text and other conditions, counted on ``tracks``: the text's matches are only reachable through
        # the GIN index as a bitmap, but with LIMIT and a 10x overestimate of the text's matches the
        # planner scans the table or an unrelated index and filters (240 ms at 1M tracks for
        # "breaking duration:10:00.."); a BitmapAnd of the GIN and range indexes visits only the rows
        # matching both (22 ms). Set for this statement's transaction only.
        statement = statement.execution_options(loist_bitmap_only=True)
    return statement
