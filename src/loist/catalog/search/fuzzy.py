"""The typo pass: when the exact pass finds fewer than FUZZY_BELOW tracks, each word that is not in
the vocabulary (``search_vocab``, kept by triggers) is replaced by its nearest vocabulary words by
trigram similarity (candidates from ``pg_trgm`` / an FTS5 ``trigram`` table, scored by the one Python
:func:`~loist.catalog.text.similarity`), and the search runs again. Each replacement keeps its edit
distance from the typed word, so a track matching one with fewer edits ranks first.

Table names in SQL text are module constants; words travel as bound parameters (S608 exemption).
"""
# ruff: noqa: S608

from __future__ import annotations

from dataclasses import replace

import sqlalchemy as sa
from rapidfuzz.distance import OSA
from sqlalchemy.ext.asyncio import AsyncConnection

from loist.catalog.query import ParsedQuery, Term, Token
from loist.catalog.search import tuning
from loist.catalog.search.builder import next_prefix
from loist.catalog.search.index import VOCAB_TABLE, VOCAB_TRGM_TABLE
from loist.catalog.text import inner_trigrams, similarity


def _fuzzable(token: Token) -> bool:
    text = token.text
    return len(text) >= 3 and not any(ch.isdigit() for ch in text) and len(text) <= 32


async def _known(conn: AsyncConnection, dialect: str, token: Token) -> bool:
    if token.prefix:
        query = sa.text(f"SELECT 1 FROM {VOCAB_TABLE} WHERE term >= :low AND term < :high LIMIT 1").bindparams(  # nosec B608
            low=token.text, high=next_prefix(token.text)
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
            f"LIMIT {tuning.FUZZY_CANDIDATES}"
        ).bindparams(word=word)
    else:
        match = " OR ".join(f'"{gram}"' for gram in grams)
        query = sa.text(
            f"SELECT term FROM {VOCAB_TRGM_TABLE} WHERE {VOCAB_TRGM_TABLE} MATCH :match ORDER BY rank "  # nosec B608
            f"LIMIT {tuning.FUZZY_CANDIDATES}"
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
    kept = [(-negative, term) for negative, term in scored if -negative >= tuning.FUZZY_MIN_SIMILARITY]
    if not kept:
        return []
    best = kept[0][0]
    return [term for score, term in kept if score >= best - tuning.FUZZY_MARGIN - 1e-9][:tuning.FUZZY_EXPANSIONS]


async def fuzzy_rewrite(conn: AsyncConnection, dialect: str, parsed: ParsedQuery) -> ParsedQuery | None:
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
                        # Each replacement's edits from the typed word (adjacent letters swapped
                        # count as one): fewer edits rank first (tuning.token_words).
                        edits = tuple(OSA.distance(token.text, word) for word in similar)
                        token = replace(token, text=similar[0], prefix=False, fuzzy=tuple(similar[1:]), edits=edits)
                        changed = True
                tokens.append(token)
            groups.append(tuple(tokens))
        terms.append(replace(term, alternatives=tuple(groups)))
    if not changed:
        return None
    return replace(parsed, terms=terms)
