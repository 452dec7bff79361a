"""Running a search: the exact pass, the typo pass when it finds too little, and each pass's page
(keyset, two phases), total, cursor and facets, as its :class:`~loist.catalog.search.plan.Plan` says."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from loist.catalog.errors import database_failed
from loist.catalog.query import ParsedQuery, parse_query
from loist.catalog.rows import row_to_track
from loist.catalog.schema import tracks
from loist.catalog.search import tuning, walk
from loist.catalog.search.facets import facets
from loist.catalog.search.fuzzy import fuzzy_rewrite
from loist.catalog.search.paging import after, cursor_is_fuzzy, cursor_key, encode_search_cursor
from loist.catalog.search.plan import Plan, count_on_own_connection, plan_pass
from loist.errors import LoistError
from loist.model import SearchHit, SearchRequest, SearchResult


async def run_search(engine: AsyncEngine, dialect: str, request: SearchRequest) -> SearchResult:
    """Run ``request`` against the catalog on ``engine`` (``dialect``: ``sqlite`` or ``postgresql``)."""
    parsed = parse_query(request.query)
    try:
        async with engine.connect() as conn:
            if dialect == "postgresql":
                # A search only reads, statement by statement (READ COMMITTED gives each its own
                # snapshot anyway): without a transaction it saves the BEGIN and ROLLBACK round trips.
                await conn.execution_options(isolation_level="AUTOCOMMIT")
            result = await _passes(engine, conn, dialect, request, parsed)
            await conn.rollback()
            return result
    except LoistError:
        raise
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        raise database_failed(exc, engine.url, action="search") from None


async def _passes(
    engine: AsyncEngine, conn: AsyncConnection, dialect: str, request: SearchRequest, parsed: ParsedQuery
) -> SearchResult:
    """The exact pass, then the typo pass when the first page found fewer than FUZZY_BELOW tracks; a
    cursor from a typo pass continues in the typo pass."""
    if cursor_is_fuzzy(request.cursor) and parsed.has_text:
        fuzzy = await fuzzy_rewrite(conn, dialect, parsed)
        if fuzzy is not None:
            return await _run(engine, conn, dialect, request, fuzzy, fuzzy_pass=True)
    result = await _run(engine, conn, dialect, request, parsed)
    if request.cursor or result.total >= tuning.FUZZY_BELOW or not parsed.has_text:
        return result
    fuzzy = await fuzzy_rewrite(conn, dialect, parsed)
    if fuzzy is None:
        return result
    return await _run(engine, conn, dialect, request, fuzzy, fuzzy_pass=True)


async def _run(
    engine: AsyncEngine,
    conn: AsyncConnection,
    dialect: str,
    request: SearchRequest,
    parsed: ParsedQuery,
    *,
    fuzzy_pass: bool = False,
) -> SearchResult:
    """One pass: the page, the total and the facets."""
    plan = await plan_pass(conn, dialect, request, parsed, engine)
    rows, total = await _rows_and_total(engine, conn, plan, request.limit)
    capped = plan.capped
    if total > tuning.COUNT_LIMIT:  # the same bound on both engines, however the count was made
        total, capped = tuning.COUNT_LIMIT, True
    items = [SearchHit(track=row_to_track(row), score=float(row["score"] or 0)) for row in rows[: request.limit]]
    next_cursor = None
    if len(rows) > request.limit:
        key = cursor_key(plan.keys, rows[request.limit - 1])
        next_cursor = encode_search_cursor(plan.fingerprint, key, total, fuzzy_pass, capped)
    return SearchResult(
        items=items,
        total=total,
        total_relation="gte" if capped else "eq",
        next_cursor=next_cursor,
        facets=await facets(conn, plan.matched) if request.facets else None,
    )


def _page_statement(plan: Plan, limit: int) -> sa.Select[Any]:
    """Phase 1 selects the page's keys only (narrow rows sort fast); phase 2 the full rows of that page."""
    direction = sa.desc if plan.order == "desc" else sa.asc
    keys = plan.keys
    ranked = plan.match is not None and plan.sort == "relevance" and plan.walked is None
    inner = sa.select(
        plan.rid.label("rid"),
        *([] if ranked else [plan.score.label("score")]),
        *(e.label(f"_k{i}") for i, (e, _) in enumerate(keys)),
    ).select_from(plan.source).where(*plan.where)
    if plan.window:
        inner = inner.add_columns(sa.func.count().over().label("_total"))
    if ranked:
        # Compute each match's score once, in a subquery the planners keep apart (OFFSET 0): the
        # score, its sort key and the ORDER BY were three copies of a long expression, each evaluated
        # per match (108 instr() calls per row for "home gold"), and a cursor's condition a fourth.
        scored = inner.offset(0).subquery("s")
        keys = [(scored.c[f"_k{i}"], kind) for i, (_, kind) in enumerate(keys)]
        inner = sa.select(scored.c.rid, scored.c._k0.label("score"), *(c for c in scored.c if c.name.startswith("_")))
    if plan.position is not None:
        inner = inner.where(after(keys, plan.position.key, plan.order))
    page = inner.order_by(*(direction(expression) for expression, _ in keys)).limit(limit + 1).subquery("p")
    match = plan.match
    score = page.c.score if match is None or match.page_score is None else match.page_score
    return (
        sa.select(
            *tracks.c,
            score.label("score"),
            page.c.rid.label("_rid"),
            *(page.c[f"_k{i}"] for i in range(len(keys))),
            *([page.c._total] if plan.window else []),
        )
        .select_from(page.join(tracks, plan.builder.track_key() == page.c.rid))
        .order_by(*(direction(page.c[f"_k{i}"]) for i in range(len(keys))))
    )


async def _fetch_page(
    conn: AsyncConnection, plan: Plan, page: sa.Select[Any] | None, count: sa.Executable | None = None
) -> Sequence[Any]:
    """The page's rows; a walk's page with ``count`` carries the count in each row's ``_total``."""
    if plan.walked is None and page is not None:  # (always built when the walk did not read the page)
        return (await conn.execute(page)).mappings().all()
    # The walk's page: its rows by key, in the walk's order.
    if not plan.walked:
        return []
    join_key = plan.builder.track_key()
    found = sa.select(*tracks.c, join_key.label("_rid")).where(
        join_key.in_(sa.bindparam("page_keys", expanding=True, type_=join_key.type))
    )
    if count is not None:
        found = found.add_columns(walk.as_scalar(count).label("_total"))
    rows = (await conn.execute(found, {"page_keys": [key for key, _ in plan.walked]})).mappings()
    by_key = {row["_rid"]: row for row in rows}
    return [
        {**by_key[key], "score": value, "_k0": value, "_k1": by_key[key]["created_at"], "_k2": key}
        for key, value in plan.walked
        if key in by_key
    ]


async def _rows_and_total(
    engine: AsyncEngine, conn: AsyncConnection, plan: Plan, limit: int
) -> tuple[Sequence[Any], int]:
    """The page's rows (up to ``limit + 1``) and the (bounded) number of matches."""
    # The walk's page is read by key: its statement is built only to check a cursor's key.
    page = _page_statement(plan, limit) if plan.walked is None or plan.position is not None else None
    if plan.total is not None:
        return await _fetch_page(conn, plan, page), plan.total
    if plan.walked and not plan.count().get_execution_options().get("loist_bitmap_only"):
        # The walk's rows and its count in one statement: one round trip, where counting at the same
        # time on a second connection cost a checkout, its ping and its own round trips (on a
        # shared machine more than the count itself, ~1 ms at 100K tracks).
        rows = await _fetch_page(conn, plan, page, plan.count())
        return rows, int(rows[0]["_total"]) if rows else int((await conn.execute(plan.count())).scalar_one())
    if plan.builder.dialect == "postgresql" and not plan.window:
        # The page and the total are independent: on PostgreSQL they run at once, on two
        # connections (the server has more than one core; latency is the slower of the two).
        rows, total = await asyncio.gather(_fetch_page(conn, plan, page), count_on_own_connection(engine, plan.count()))
        return rows, total
    rows = await _fetch_page(conn, plan, page)
    if plan.window:
        return rows, int(rows[0]["_total"]) if rows else 0
    return rows, int((await conn.execute(plan.count())).scalar_one())
