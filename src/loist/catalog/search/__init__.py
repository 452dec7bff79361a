"""Search: the only dialect-specific SQL of the catalog (FTS5 on SQLite, tsvector/pg_trgm on PostgreSQL).

How a query runs (both engines, same steps, same answers):

1. :func:`loist.catalog.query.parse_query` turns the text into terms, ranges and keywords with the
   same tokenizer (:mod:`loist.catalog.text`) that filled the ``search_*`` columns at write time.
2. The **exact pass** (:mod:`.plan` decides, :mod:`.run` executes): a single word or prefix alone,
   by relevance, reads its page from the front of the postings (:mod:`.walk`); every other search
   matches its positive terms through the full-text index, applies exclusions, phrase adjacency,
   filters and the sort, scores the matches with one integer formula (:mod:`.builder`), and fetches
   ``limit + 1`` rows after the cursor's key (keyset pagination, :mod:`.paging`).
3. When it finds fewer than ``FUZZY_BELOW`` tracks, the **typo pass** (:mod:`.fuzzy`) replaces each
   word that is not in the vocabulary with its nearest vocabulary words, then runs again.

The modules, each one idea, each importing only those listed before it:

- :mod:`.tuning`: the ranking table, the score formula, every bound and threshold (data).
- :mod:`.postings`: the stored impacts (``search_postings``) and the triggers that keep them.
- :mod:`.index`: the other tables, indexes and triggers search reads; install, rebuild, backfill.
- :mod:`.builder`: the SQL of one search (matching, conditions, the score).
- :mod:`.paging`: sort keys, the search cursor, the page's place after it.
- :mod:`.walk`: the postings walk. :mod:`.fuzzy`: the typo rewrite. :mod:`.facets`: the counts.
- :mod:`.plan`: which path a pass takes. :mod:`.run`: running the passes (:func:`run_search`).

Only COMPLETED tracks are ever returned.
"""

from loist.catalog.search.index import (
    PG_SEARCH_TABLE,
    backfill_search_columns,
    install_search,
    pg_refill_search_table,
    pg_search_table_ddl,
    rebuild_search_index,
)
from loist.catalog.search.postings import (
    POSTINGS_TABLE,
    SQLITE_POSTINGS_TRIGGERS,
    install_postings,
    postings_ddl,
    refill_postings,
)
from loist.catalog.search.run import run_search
from loist.catalog.search.tuning import RANKING

__all__ = [
    "PG_SEARCH_TABLE",
    "POSTINGS_TABLE",
    "RANKING",
    "SQLITE_POSTINGS_TRIGGERS",
    "backfill_search_columns",
    "install_postings",
    "install_search",
    "pg_refill_search_table",
    "pg_search_table_ddl",
    "postings_ddl",
    "rebuild_search_index",
    "refill_postings",
    "run_search",
]
