"""The pair walk (PostgreSQL): the first page of a field word beside a free word or prefix
(``genre:rock volcano``), by relevance, read from the free word's postings instead of scoring every
track that has both (docs/search.md, "A field word beside a word").

The score of such a track is the free term's best posting, plus the field word's impact in its field
(at most ``top``: the first entry of that word's postings in that field), plus TOGETHER when the free
term is in that field too. The free term's lists (:mod:`loist.catalog.search.walk`) are read best
first, each posting checked for the field word by a probe of the field word's postings (its key is
(term, field, impact, added, track): one index descent per distinct impact of that word, a handful);
each track found that has both is scored exactly from its row (:meth:`Builder.score`, the formula of
the full ranking). A track never read in any list has its best posting below every list's last read
posting ``(s, added, track)``, so its sort key is below ``(s + top, added, track)``: once the page's
last track is above that bound for every list not read to its end, no unread track can enter the page,
and the page is exactly the one a full ranking gives. Lists still above the page's last track are
read further (four times deeper a round); past WALK_PAIR_MAX_READ postings, or when the free term's
lists in the field word's own field (TOGETHER) are not read to their ends in the first round, the
search is ranked the general way.

Plain SQL text built from module constants; only bound parameters carry values (S608 exemption).
"""
# ruff: noqa: S608

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from loist.catalog.query import ParsedQuery, Term
from loist.catalog.schema import tracks
from loist.catalog.search import tuning
from loist.catalog.search.builder import Builder
from loist.catalog.search.postings import POSTINGS_TABLE
from loist.catalog.search.tuning import FIELD_IDS, RANKING
from loist.catalog.search.walk import Filters, Scored, Walk, _Lists, array_params

Key = tuple[int, datetime, Any]  # a sort key: (score, added, track)

_IMPACTS = sa.text(
    f"WITH RECURSIVE i(impact) AS ("  # nosec B608
    f"SELECT (SELECT max(impact) FROM {POSTINGS_TABLE} WHERE term = :g_term AND field = :g_field) "
    f"UNION ALL SELECT (SELECT max(impact) FROM {POSTINGS_TABLE} WHERE term = :g_term AND field = :g_field "
    "AND impact < i.impact) FROM i WHERE i.impact IS NOT NULL) "
    "SELECT impact FROM i WHERE impact IS NOT NULL LIMIT :g_limit"
)
_TOP_TITLES = sa.text(
    "SELECT coalesce(sum(c.n), 0) FROM unnest(CAST(:words AS text[])) AS w(term) CROSS JOIN LATERAL ("  # nosec B608
    f"SELECT count(*) AS n FROM (SELECT 1 FROM {POSTINGS_TABLE} AS p WHERE p.term = w.term "
    f"AND p.field = {FIELD_IDS['title']} AND p.impact = (SELECT max(m.impact) FROM {POSTINGS_TABLE} AS m "
    f"WHERE m.term = w.term AND m.field = {FIELD_IDS['title']}) LIMIT :cap) AS x) AS c"
)
_MAX_IMPACTS = 32  # distinct impacts of the field word probed per posting (a genre word: ~6)


def pair_terms(parsed: ParsedQuery) -> tuple[Term, Term] | None:
    """(the genre word, the free term) when the query is exactly one ``genre:`` term of one finished
    word and one free term of single words or prefixes, with no exclusion; else None."""
    if parsed.negative or len(parsed.positive) != 2:
        return None
    fielded = [term for term in parsed.positive if term.field]
    free = [term for term in parsed.positive if not term.field]
    if len(fielded) != 1 or len(free) != 1:
        return None
    word, other = fielded[0], free[0]
    if word.field != "genre" or word.phrase or len(word.alternatives) != 1 or len(word.alternatives[0]) != 1:
        return None
    token = word.alternatives[0][0]
    if token.prefix or token.fuzzy or token.edits:
        return None
    if other.phrase or not all(len(group) == 1 for group in other.alternatives):
        return None
    return word, other


async def top_titles(conn: AsyncConnection, words: list[str]) -> int:
    """How many title postings ``words`` have at their top impact (each word's count capped just
    above WALK_PAIR_MIN_TOP): a bounded index-only probe telling a word with long postings lists."""
    cap = tuning.WALK_PAIR_MIN_TOP + 1
    return int((await conn.execute(_TOP_TITLES, {"words": words, "cap": cap})).scalar_one())


class _Probed(_Lists):
    """The free term's lists, each posting with the genre word's impact in the same track (NULL: the
    track lacks it), found by one descent of the genre postings by track (migration 0010)."""

    def __init__(self, builder: Builder, words: list[tuple[str, int]], genre_word: str, filters: Filters):
        super().__init__(builder, words, list(RANKING), None, filters)
        self.genre_word = genre_word

    async def probed(self, conn: AsyncConnection, slices: dict[int, tuple[int, int]]) -> dict[int, list[tuple[Any, ...]]]:
        """(track, score in its list, added, genre word's impact) of each list in ``slices`` (list ->
        (postings already read, how many more)), in order: a posting is probed once."""
        indexes = list(slices)
        columns = {
            "term": ([self.lists[i][0] for i in indexes], sa.Text()),
            "field": ([FIELD_IDS[self.lists[i][2]] for i in indexes], sa.Integer()),
            "rank": ([self.lists[i][1] for i in indexes], sa.BigInteger()),
            "skip": ([slices[i][0] for i in indexes], sa.Integer()),
            "depth": ([slices[i][1] for i in indexes], sa.Integer()),
            "list": (indexes, sa.Integer()),
        }
        params: dict[str, Any] = {**self.base, "g_term": self.genre_word}
        binds = [*self.binds, sa.bindparam("g_term", type_=sa.Text())]
        array_params(columns, params, binds)
        # The probe is a correlated subquery, evaluated for the rows read only (after OFFSET and LIMIT).
        sql = (
            f"SELECT l.track, l.impact + w.rank AS score, l.added, w.list, (SELECT q.impact "  # nosec B608
            f"FROM {POSTINGS_TABLE} AS q WHERE q.field = {FIELD_IDS['genre']} AND q.track = l.track "
            "AND q.term = :g_term) AS g "
            f"FROM unnest({', '.join(f':l_{name}' for name in columns)}) AS w({', '.join(columns)}) "
            f"CROSS JOIN LATERAL (SELECT p.track, p.impact, p.added FROM {POSTINGS_TABLE} AS p "
            f"WHERE p.term = w.term AND p.field = w.field{self.where} "
            "ORDER BY p.impact DESC, p.added DESC, p.track DESC LIMIT w.depth OFFSET w.skip) AS l"
        )
        read: dict[int, list[tuple[Any, ...]]] = {index: [] for index in slices}
        for rid, score, added, index, impact in (await conn.execute(sa.text(sql).bindparams(*binds), params)).all():
            read[index].append((rid, int(score), added, impact))
        return read


async def pair_page(
    conn: AsyncConnection, builder: Builder, limit: int, filters: Filters, words: list[tuple[str, int]]
) -> Walk | None:
    """The first page's ``(rid, score)`` (up to ``limit + 1``), and the number of matches when every
    list was read to its end; None when this search is better ranked the general way."""
    terms = pair_terms(builder.parsed)
    if terms is None:
        return None
    field_term = terms[0]
    field_word = field_term.alternatives[0][0].text
    impacts = [int(row[0]) for row in (await conn.execute(_IMPACTS, {
        "g_term": field_word, "g_field": FIELD_IDS[field_term.field], "g_limit": _MAX_IMPACTS + 1})).all()]
    if not words or not impacts:
        return Walk([], 0, sa.select(sa.literal(0)))
    if len(impacts) > _MAX_IMPACTS:
        return None
    lists = _Probed(builder, words, field_word, filters)
    return await _walk(conn, builder, lists, field_term, impacts[0], limit + 1)


async def _walk(conn: AsyncConnection, builder: Builder, lists: _Probed, field_term: Term, top: int, need: int) -> Walk | None:
    count = len(lists.lists)
    ended = [False] * count
    last: list[Key | None] = [None] * count  # the last posting read in each list
    seen: set[Any] = set()
    exact: dict[Any, Key] = {}  # tracks with both words: their sort keys
    slices = {index: (0, need) for index in range(count)}  # list -> (postings read, how many more)
    reach = dict.fromkeys(range(count), need)  # how deep each list is read
    first = True
    while True:
        read = await lists.probed(conn, slices)
        for index, rows in read.items():
            ended[index] = len(rows) < slices[index][1]
            if rows:
                rid, score, added, _ = rows[-1]
                last[index] = (score, added, rid)
        if first and any(not ended[i] for i, (_, _, name) in enumerate(lists.lists) if name == field_term.field):
            return None  # the free term's lists in the field word's own field (TOGETHER) must end at once
        first = False
        new = {rid for rows in read.values() for rid, _, _, impact in rows if impact is not None} - seen
        seen |= new
        if new:
            exact.update(await _scores(conn, builder, field_term, new))
        ranked = sorted(exact.values(), reverse=True)
        floor = ranked[need - 1] if len(ranked) >= need else None
        bounds = {i: (key[0] + top, key[1], key[2]) for i, key in enumerate(last) if not ended[i] and key is not None}
        open_ = [i for i, bound in bounds.items() if floor is None or bound >= floor]
        if not open_:
            page: Scored = [(rid, score) for score, _, rid in ranked[:need]]
            return Walk(page, len(ranked) if all(ended) else None, sa.select(sa.literal(0)))
        if floor is None:  # the page is not full yet: the lists closest to the top first
            best = max(bounds[i][0] for i in open_)
            open_ = [i for i in open_ if bounds[i][0] + top >= best]
        slices = {i: (reach[i], reach[i] * 3) for i in open_}
        reach.update((i, reach[i] * 4) for i in open_)
        if sum(reach.values()) > tuning.WALK_PAIR_MAX_READ:
            return None


async def _scores(conn: AsyncConnection, builder: Builder, field_term: Term, found: set[Any]) -> dict[Any, Key]:
    """The sort keys of the tracks of ``found`` that have the field word too, scored from their rows
    as the full ranking scores them (one primary-key lookup each)."""
    key = builder.track_key()
    statement = sa.select(key, builder.score(), tracks.c.created_at).where(
        # One array parameter (an expanding IN would be a new statement, planned anew, per length).
        key == sa.func.any(sa.bindparam("pair_found", type_=postgresql.ARRAY(key.type))),
        builder.term_score(field_term) > 0,
    )
    rows = (await conn.execute(statement, {"pair_found": list(found)})).all()
    return {rid: (int(score), created, rid) for rid, score, created in rows}
