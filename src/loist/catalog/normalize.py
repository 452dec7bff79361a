"""Text folding shared by the catalog writer and the search engine (one definition, so they agree)."""

from __future__ import annotations

import unicodedata
from functools import lru_cache


def fold(text: str) -> str:
    """Casefold and strip accents: ``"Électro  Pop"`` -> ``"electro pop"``.

    NFKD splits accented letters into base + combining mark; the marks are dropped, then the text is
    casefolded and its whitespace collapsed.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


@lru_cache(maxsize=8192)
def normalize_genre(genre: str) -> str:
    """The key a genre is filtered and faceted by (``track_genres.genre_norm``).

    Cached: a library has few distinct genres and bulk ingest folds the same ones again and again.
    """
    return fold(genre)


def genre_rows(genres: list[str]) -> list[tuple[str, str]]:
    """``(genre, genre_norm)`` pairs for a track, blank and duplicate (after folding) genres dropped.

    The first spelling of a genre wins, so ``["Rock", "rock"]`` yields one row.
    """
    seen: dict[str, str] = {}
    for genre in genres:
        cleaned = " ".join(genre.split())
        norm = normalize_genre(cleaned)
        if norm and norm not in seen:
            seen[norm] = cleaned
    return [(genre, norm) for norm, genre in seen.items()]
