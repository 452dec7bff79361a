"""Facets: counts over every match of a search (not just the page), the FACET_LIMIT largest of each:
genres by their folded key (``track_genres.genre_norm``; on PostgreSQL the matches' own
``tracks.genre_keys``, the same values), formats, decades."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from loist.catalog.schema import track_genres, tracks
from loist.catalog.search import tuning


async def facets(conn: AsyncConnection, where: Sequence[sa.ColumnElement[bool]]) -> dict[str, dict[str, int]]:
    matched = sa.select(tracks.c.id).where(*where)
    count = sa.func.count().label("n")

    async def grouped(key: sa.ColumnElement[Any], query: sa.Select[Any]) -> dict[str, int]:
        query = query.group_by(key).order_by(count.desc(), key).limit(tuning.FACET_LIMIT)
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
