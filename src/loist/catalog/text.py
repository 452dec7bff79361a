"""The one text normaliser of the catalog: how text is folded and tokenized, for the search index, for
queries, and for genre keys (pure: no database).

Folding happens here and only here (not in ``unaccent`` or an FTS tokenizer), so SQLite and
PostgreSQL see identical tokens and give identical answers, and a genre filter, a ``genre:`` term and
the genre facet agree.

:func:`fold`: text is NFKD-decomposed, combining marks dropped (``Rós`` -> ``ros``), casefolded, and the
letters NFKD does not split but people type without their accent folded too (``ø`` -> ``o``, ``æ`` ->
``ae``, ``ł`` -> ``l``, ``ß`` -> ``ss``...).

Tokens (:func:`index_tokens`, :func:`word_tokens`): folded text split on anything that is not a letter,
digit or symbol (emoji). A word that punctuation splits into parts is indexed as its parts *and*
joined (``AC/DC`` -> ``ac dc acdc``, ``R.E.M.`` -> ``r e m rem``), so ``acdc``, ``ac/dc``, ``r.e.m.``
and ``rem`` all match. CJK and Hangul runs have no spaces between words, so they are indexed as
overlapping character bigrams plus the run's last character. :func:`search_columns` gives the
``search_*`` column values the catalog writes with every track.

Genre keys (:func:`normalize_genre`, :func:`genre_rows`): a genre folded, its whitespace collapsed:
``track_genres.genre_norm`` and PostgreSQL's ``tracks.genre_keys`` (filters, facets).

Trigrams (:func:`similarity`): pg_trgm's similarity, computed in Python for both engines' typo pass.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

MAX_TOKEN_CHARS = 64  # longer tokens are cut (at index time and at query time alike)

# The columns that hold index tokens, one per searchable field group, and the tag fields feeding them.
SEARCH_FIELDS: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "artist": ("artists",),
    "album": ("album", "album_artists"),
    "genre": ("genres",),
    "composer": ("composers",),
    "label": ("label",),
}
SEARCH_COLUMNS: dict[str, str] = {name: f"search_{name}" for name in SEARCH_FIELDS}
# A row read from a catalog older than the name lists (a migration's backfill) has only the display
# string: it is then the one name. (Every name is indexed, so any of several artists finds the track.)
_NAME_FALLBACK: dict[str, str] = {"artists": "artist", "album_artists": "album_artist", "composers": "composer"}

# Letters NFKD does not decompose but people type without the accent.
_EXTRA_FOLDS = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i", "ß": "ss"}
)


# --- folding and tokens ------------------------------------------------------------------------


def fold(text: str) -> str:
    """Casefold and strip accents and marks, ``ø æ œ ł đ ð þ ı ß`` included (``"Søren"`` -> ``"soren"``);
    everything else (punctuation, spaces) is kept. The one fold: index, query and genre keys."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # NFC recomposes what must stay composed (Hangul jamo back into syllables).
    return unicodedata.normalize("NFC", stripped.casefold().translate(_EXTRA_FOLDS))


def is_cjk(ch: str) -> bool:
    """A CJK or Hangul character (indexed as character pairs, not words)."""
    code = ord(ch)
    return (
        0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x3400 <= code <= 0x4DBF  # CJK extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xAC00 <= code <= 0xD7AF  # hangul syllables
        or 0x1100 <= code <= 0x11FF  # hangul jamo
        or 0x3130 <= code <= 0x318F  # hangul compatibility jamo
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0x20000 <= code <= 0x2FA1F  # CJK extensions B-F, compatibility supplement
        or 0x31F0 <= code <= 0x31FF  # katakana phonetic extensions
        or 0xFF66 <= code <= 0xFF9F  # half-width katakana (NFKD widens them anyway)
    )


def _parts(word: str) -> list[str]:
    """Split a folded word into its alphanumeric parts; each symbol (emoji) is a part of its own."""
    parts: list[str] = []
    current: list[str] = []
    for ch in word:
        if ch.isalnum():
            current.append(ch)
            continue
        if current:
            parts.append("".join(current))
            current = []
        if unicodedata.category(ch) == "So":
            parts.append(ch)
    if current:
        parts.append("".join(current))
    return parts


def _runs(part: str) -> list[tuple[bool, str]]:
    """Split a part into (is_cjk, text) runs: ``abc東京`` -> ``[(False, "abc"), (True, "東京")]``."""
    runs: list[tuple[bool, str]] = []
    for ch in part:
        cjk = is_cjk(ch)
        if runs and runs[-1][0] == cjk:
            runs[-1] = (cjk, runs[-1][1] + ch)
        else:
            runs.append((cjk, ch))
    return runs


def _cut(token: str) -> str:
    return token[:MAX_TOKEN_CHARS]


def _cjk_tokens(run: str) -> list[str]:
    """Overlapping bigrams of a CJK run (``東京タワー`` -> ``東京 京タ タワ ワー``)."""
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


@dataclass(frozen=True)
class WordTokens:
    """How one whitespace-separated word tokenizes."""

    main: tuple[str, ...]  # in order; what a phrase is made of
    joined: str | None  # the word with its punctuation removed, when punctuation split it
    cjk_tail: str | None  # last character of the word's final CJK run (index side only)
    single_cjk: frozenset[str] = frozenset()  # one-character CJK runs (matched as prefixes)


def word_tokens(word: str) -> WordTokens:
    """Tokens of one folded word (no whitespace inside)."""
    main: list[str] = []
    plain_parts: list[str] = []
    single: set[str] = set()
    tail: str | None = None
    for part in _parts(word):
        for cjk, run in _runs(part):
            if cjk:
                main.extend(_cjk_tokens(run))
                if len(run) == 1:
                    single.add(run)
                else:
                    tail = run[-1]
            else:
                main.append(_cut(run))
                plain_parts.append(run)
    joined = None
    if len(plain_parts) > 1 and len(plain_parts) == len(main):
        joined = _cut("".join(plain_parts))
    return WordTokens(tuple(main), joined, tail, frozenset(single))


def index_tokens(text: str | None) -> list[str]:
    """The tokens stored for ``text``: every word's tokens in order, then the extra forms."""
    if not text:
        return []
    main: list[str] = []
    extra: list[str] = []
    for word in fold(text).split():
        tokens = word_tokens(word)
        main.extend(tokens.main)
        if tokens.joined:
            extra.append(tokens.joined)
        if tokens.cjk_tail:
            extra.append(tokens.cjk_tail)
    return main + extra


_ASCII_WORD = re.compile(r"[a-z0-9]+")


@lru_cache(maxsize=65536)
def _value_text(value: str) -> str:
    """The tokens of one tag value as text. Cached: artists, albums and genres repeat a lot."""
    if value.isascii():
        # Fast path (most tags): ASCII needs no decomposition, and lower() is its casefold.
        main: list[str] = []
        extra: list[str] = []
        for word in value.lower().split():
            parts = _ASCII_WORD.findall(word)
            main.extend(_cut(part) for part in parts)
            if len(parts) > 1:
                extra.append(_cut("".join(parts)))
        return " ".join(main + extra)
    return " ".join(index_tokens(value))


def index_text(*values: str | None) -> str:
    """The ``search_*`` column value for one or more tag values (space-separated tokens)."""
    texts = [_value_text(value) for value in values if value]
    return " ".join(text for text in texts if text)


def file_title(filename: str | None) -> str | None:
    """The words a track without a title is found by: its file name without the extension
    (``spoken_intro.wav`` -> ``spoken_intro``, indexed as ``spoken intro spokenintro``)."""
    if not filename:
        return None
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, _ = name.rpartition(".")
    return (stem if dot and stem else name).strip() or None


def search_columns(tags: Mapping[str, Any] | Any, filename: str | None = None) -> dict[str, str]:
    """The ``search_*`` column values for a track's tags (a :class:`~loist.model.Tags` or a row dict).

    The catalog writer stores these with every insert and tag update; the search indexes (FTS5 on
    SQLite, the weighted ``tsvector`` on PostgreSQL) are built from them. ``filename``: the track's
    ``source.original_filename``; a track without a title is listed by it, and found by its words.
    """

    def get(name: str) -> Any:
        if isinstance(tags, Mapping):
            value = tags.get(name)
            if value is None and name in _NAME_FALLBACK:
                value = tags.get(_NAME_FALLBACK[name])
        else:
            value = getattr(tags, name, None)
        if name == "title" and not value:
            return file_title(filename)
        return value

    out: dict[str, str] = {}
    for name, sources in SEARCH_FIELDS.items():
        values: list[str | None] = []
        for source in sources:
            value = get(source)
            if isinstance(value, list | tuple):
                values.extend(str(item) for item in value if item)
            elif value is not None:
                values.append(str(value))
        out[SEARCH_COLUMNS[name]] = index_text(*values)
    return out


# --- genre keys ------------------------------------------------------------------------------------


@lru_cache(maxsize=8192)
def normalize_genre(genre: str) -> str:
    """The key a genre is filtered and faceted by (``track_genres.genre_norm``): folded, its
    whitespace collapsed (``"Électro  Pop"`` -> ``"electro pop"``, ``"Søren"`` -> ``"soren"``).

    Cached: a library has few distinct genres and bulk ingest folds the same ones again and again.
    """
    return " ".join(fold(genre).split())


def genre_rows(genres: list[str], key: Callable[[str], str] = normalize_genre) -> list[tuple[str, str]]:
    """``(genre, genre_norm)`` pairs for a track, blank and duplicate (after folding) genres dropped.

    The first spelling of a genre wins, so ``["Rock", "rock"]`` yields one row. ``key``: another
    fold (a migration restoring the keys an earlier release wrote).
    """
    seen: dict[str, str] = {}
    for genre in genres:
        cleaned = " ".join(genre.split())
        norm = key(cleaned)
        if norm and norm not in seen:
            seen[norm] = cleaned
    return [(genre, norm) for norm, genre in seen.items()]


# --- trigrams (the typo pass, both engines) ---------------------------------------------------------


def trigrams(word: str) -> set[str]:
    """pg_trgm's trigrams of one word: padded with two spaces before and one after."""
    padded = f"  {word} "
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def similarity(a: str, b: str) -> float:
    """pg_trgm ``similarity()``: shared trigrams over all trigrams (computed here for both engines)."""
    ta, tb = trigrams(a), trigrams(b)
    union = len(ta | tb)
    return len(ta & tb) / union if union else 0.0


def inner_trigrams(word: str) -> list[str]:
    """The unpadded trigrams of a word (what an FTS5 ``trigram`` index can look up)."""
    return sorted({word[i : i + 3] for i in range(len(word) - 2)})
