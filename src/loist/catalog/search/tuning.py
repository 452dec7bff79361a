"""Search as data: the ranking table, the score formula, and every bound and threshold search obeys.

**The score**: one integer formula, computed the same way by both engines. A track's relevance for a
query is the sum, over the query's positive terms, of the term's *impact* in the track: the best, over
the fields the term may match (one field for ``artist:x``), of

    impact = weight x IMPACT_SCALE // (tokens in that field + IMPACT_DAMPING)

(integer division). A match in a short field counts more than one in a long field (bm25's length
normalisation without corpus statistics), a title or artist match more than an album match, and so
on down the :data:`RANKING` table. Because an impact depends only on the field and the track, it is
stored with each (token, field, track) in ``search_postings`` (the *postings*, kept by triggers,
:mod:`loist.catalog.search.index`), ordered by impact: the best matches of a single word or prefix are
read from the front of that index instead of scoring every match (:mod:`loist.catalog.search.walk`).
Both engines compute the same integers, from the same ``search_*`` token columns, so they rank
identically.

The other modules read the bounds through this module (``tuning.COUNT_LIMIT``), at call time: a test
may change one (``monkeypatch.setattr(tuning, "WALK_POSTINGS", False)``) and every path follows.
"""

from __future__ import annotations

from dataclasses import dataclass

from loist.catalog.query import Token


@dataclass(frozen=True)
class FieldWeight:
    column: str
    weight: float  # relative importance of a match in this field
    pg_label: str  # the tsvector weight class holding it (PostgreSQL has four: A-D)


# The ranking table: each field's weight in the score and, on PostgreSQL, the tsvector weight class its
# tokens carry (used to restrict ``field:`` terms to their class).
RANKING: dict[str, FieldWeight] = {
    "title": FieldWeight("search_title", 10.0, "A"),
    "artist": FieldWeight("search_artist", 10.0, "B"),
    "album": FieldWeight("search_album", 4.0, "C"),
    "genre": FieldWeight("search_genre", 2.0, "D"),
    "composer": FieldWeight("search_composer", 2.0, "D"),
    "label": FieldWeight("search_label", 2.0, "D"),
}
FIELD_IDS: dict[str, int] = {name: index for index, name in enumerate(RANKING)}  # stored as ``field``

IMPACT_SCALE = 1000
IMPACT_DAMPING = 3


# --- the ranking rules above the impacts ------------------------------------------------------------
#
# A score is one integer, compared whole: its parts sit in decimal tiers, so a higher tier always wins
# over everything below it (the impacts of 16 words sum to at most 40,000):
#
#   score = TYPO x (edits the typo pass saved: for each misspelt word, the most edits among the
#                   words it was replaced by, minus the edits of the word that matched)
#         + EXACT x (words being typed, matched whole rather than as a prefix)
#         + TOGETHER x (the most query words matched in one field, minus 1)
#         + PHRASE (every query word in one field, adjacent and in order; two words or more)
#         + the impacts
#
# and equal scores are ordered by the track's ``created_at``, newest first, then by the track key.
TYPO = 1_000_000_000
EXACT = 10_000_000
TOGETHER = 100_000
PHRASE = 50_000
MAX_EDITS = 9  # edits counted per word (a replacement is at least 0.4 similar: a handful at most)


def token_words(token: Token) -> list[tuple[str, bool, int]]:
    """Each way ``token`` matches a word, as ``(word, as a prefix, rank)``, ``rank`` to add to the
    impact: a word being typed matched whole (EXACT) above matched as a prefix (0); a typo's
    replacement with fewer edits above one with more (TYPO per edit saved)."""
    if token.edits:
        worst = min(max(token.edits), MAX_EDITS)
        words = [token.text, *token.fuzzy]
        return [(word, False, TYPO * (worst - min(edits, worst))) for word, edits in zip(words, token.edits, strict=True)]
    if token.prefix:
        return [(token.text, False, EXACT), (token.text, True, 0)]
    return [(token.text, False, 0), *((word, False, 0) for word in token.fuzzy)]


def impact_sql(column: str, weight: float) -> str:
    """The impact of a match in ``column`` (an SQL column reference), as integer SQL for both engines."""
    tokens = f"(length({column}) - length(replace({column}, ' ', '')) + 1)"
    return f"({round(weight * IMPACT_SCALE)} / ({tokens} + {IMPACT_DAMPING}))"


# --- counting and facets ---------------------------------------------------------------------------

# Counting stops here: beyond it ``total`` is this bound and ``total_relation`` is "gte" (Elasticsearch's
# convention; a search UI shows "1,000+"). An exact count of a broad match costs more than the page:
# measured at 100K tracks, a range's capped count takes ~3 ms at 1,000 against 11-20 ms at 10,000.
COUNT_LIMIT = 1_000
FACET_LIMIT = 50  # values per facet, the largest first

# --- walking an index instead of ranking every match -------------------------------------------------

# The postings walk (relevance of one word or prefix alone). Tests switch it off to check that both
# ways give the same pages.
WALK_POSTINGS = True
# The walk reads at most this many distinct words (a prefix's completions, a typo's replacements);
# a prefix with more completions is ranked the general way (every match scored).
WALK_MAX_WORDS = 16
# ... and past a cursor reads at most this many postings in a round (a list that lost postings of
# tracks already shown is read further; a postings' primary-key lookup each, ~3 us at 1M tracks).
WALK_MAX_READ = 8192
# The pair walk (PostgreSQL: a field word beside a free word, ``genre:rock volcano``; see
# loist.catalog.search.pairwalk): tests switch it off to compare with the full ranking. It reads at
# most this many postings (each with a probe of the field word's postings, ~5-10 us at 1M tracks)
# before giving up for the full ranking.
WALK_PAIRS = True
WALK_PAIR_MAX_READ = 4096
# ... taken only when the free word's title postings at their top impact (summed over its words: a
# prefix's completions) number at least this many, read by a bounded index-only probe (~0.3 ms). At
# 1M tracks a typical word has ~600 there and is ranked faster the general way (~30 ms: ~3,700
# matches with genre:rock); a word with twice as many (``garden``: 1,149; ``free`` with ``freedom``:
# 1,215) has twice the matches (54-58 ms) and the walk takes ~40 ms (docs/benchmarks.md, Round 6).
WALK_PAIR_MIN_TOP = 900
# SQLite, text sorted by another key: walk the sort index when matches² >= this x (limit+1) x tracks,
# i.e. when the page's rows are expected within a few times fewer index entries than there are matches.
WALK_FACTOR = 2
# SQLite, a filter checked in the postings before the rows (loist.catalog.search.walk): taken only
# when the postings that pass are at most this fraction of what the other way visits: a genre
# filter's listed tracks (PREFER_GENRE_POSTINGS), a term's postings (PREFER_PREFILTER, from a sample
# of PREFILTER_SAMPLE). Unselective filters (``year:1900..``, a genre word shared by other genres,
# "rock" in "Hard Rock") made the postings way slower (two genres from 1900: 23 -> 59 ms).
PREFER_GENRE_POSTINGS = 0.5
PREFER_PREFILTER = 0.5
PREFILTER_SAMPLE = 500

# --- the typo pass ---------------------------------------------------------------------------------

FUZZY_BELOW = 3  # run the fuzzy pass when the exact pass finds fewer tracks than this
FUZZY_MIN_SIMILARITY = 0.4  # pg_trgm says 0.3; 0.4 keeps "foret" -> forest without forty other words
FUZZY_EXPANSIONS = 3  # nearest vocabulary words tried per misspelt word
# ... and only those within this much of the nearest one's similarity: "strangr" tries "strange"
# (0.6), not also "stranger"/"stranges" (0.545); "beyonse" keeps "beyond" (0.5) and "beyonce" (0.455).
# Each extra word widens the second pass (at 100K tracks a common word matches thousands of tracks,
# all ranked): the typo kind's p95 fell from ~30 to ~20 ms.
FUZZY_MARGIN = 0.05
FUZZY_CANDIDATES = 64  # vocabulary words the trigram index proposes, before the exact similarity
