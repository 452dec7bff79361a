"""The search query language and the one text normaliser search uses (pure: no database).

Two jobs, kept in one module so they can never disagree:

1. :func:`index_text` turns a tag value into the space-separated tokens stored in the ``search_*``
   columns (the catalog writer calls it through :func:`search_columns`), and :func:`parse_query`
   turns what a person typed into :class:`ParsedQuery` using the very same tokenizer. Folding
   happens here and only here (not in ``unaccent`` or an FTS tokenizer), so SQLite and PostgreSQL
   see identical tokens and give identical answers.
2. The query language: free words (the last one is a prefix while the user types), ``"quoted
   phrases"``, ``-excluded`` words, ``field:value`` and ranges (``year:1990..1999``,
   ``duration:..4:30``, ``added:-7d..``). Any string parses: a part that does not make sense falls
   back to plain words, and nothing raises.

Tokens: text is NFKD-decomposed, combining marks dropped (``Rós`` -> ``ros``), casefolded, and split
on anything that is not a letter, digit or symbol (emoji). A word that punctuation splits into parts
is indexed as its parts *and* joined (``AC/DC`` -> ``ac dc acdc``, ``R.E.M.`` -> ``r e m rem``), so
``acdc``, ``ac/dc``, ``r.e.m.`` and ``rem`` all match. CJK and Hangul runs have no spaces between
words, so they are indexed as overlapping character bigrams plus the run's last character.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

# --- limits (a 10 KB query must cost no more than a short one) ------------------------------------

MAX_QUERY_CHARS = 1000  # the rest of a longer query is ignored
MAX_TERMS = 16  # text terms (words, phrases, field values) kept, in order
MAX_TOKEN_CHARS = 64  # longer tokens are cut (at index time and at query time alike)
MAX_PHRASE_TOKENS = 12
# A lone word shorter than this is not expanded as a prefix: "br" alone would match (and rank) a
# fifth of the library. With other words it still is ("highway to he"): they narrow the matches.
MIN_LONE_PREFIX_CHARS = 3

# The columns that hold index tokens, one per searchable field group, and the tag fields feeding them.
SEARCH_FIELDS: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "artist": ("artist",),
    "album": ("album", "album_artist"),
    "genre": ("genres",),
    "composer": ("composer",),
    "label": ("label",),
}
SEARCH_COLUMNS: dict[str, str] = {name: f"search_{name}" for name in SEARCH_FIELDS}

TEXT_FIELDS = frozenset(SEARCH_FIELDS)  # field:value matched against the index
KEYWORD_FIELDS = frozenset({"format"})  # field:value matched exactly (any of)
RANGE_FIELDS = frozenset({"year", "duration", "added"})
FIELD_ALIASES: dict[str, str] = {
    "by": "artist",
    "song": "title",
    "track": "title",
    "record": "album",
    "genres": "genre",
    "style": "genre",
    "ext": "format",
    "type": "format",
    "length": "duration",
    "time": "duration",
    "date": "added",
    "created": "added",
}

# Letters NFKD does not decompose but people type without the accent.
_EXTRA_FOLDS = str.maketrans(
    {"ø": "o", "æ": "ae", "œ": "oe", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "ı": "i", "ß": "ss"}
)


# --- normalisation ----------------------------------------------------------------------------


def fold(text: str) -> str:
    """Casefold and strip accents and marks; everything else (punctuation, spaces) is kept."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # NFC recomposes what must stay composed (Hangul jamo back into syllables).
    return unicodedata.normalize("NFC", stripped.casefold().translate(_EXTRA_FOLDS))


def _is_cjk(ch: str) -> bool:
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


def _is_token_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch) == "So"


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
        cjk = _is_cjk(ch)
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


def search_columns(tags: Mapping[str, Any] | Any) -> dict[str, str]:
    """The ``search_*`` column values for a track's tags (a :class:`~loist.model.Tags` or a row dict).

    The catalog writer stores these with every insert and tag update; the search indexes (FTS5 on
    SQLite, the weighted ``tsvector`` on PostgreSQL) are built from them.
    """

    def get(name: str) -> Any:
        if isinstance(tags, Mapping):
            return tags.get(name)
        return getattr(tags, name, None)

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


# --- parsed query -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    text: str
    prefix: bool = False
    fuzzy: tuple[str, ...] = ()  # nearest vocabulary words, added by the fuzzy pass (matched exactly)


@dataclass(frozen=True)
class Term:
    """One thing that must (or, negated, must not) match.

    ``alternatives`` is an OR of AND-groups of tokens: ``ac/dc`` is ``(acdc) OR (ac AND dc)``.
    ``phrase`` (a quoted phrase) additionally requires the tokens adjacent, in order, in one field.
    ``field`` restricts the match to one field's column.
    """

    alternatives: tuple[tuple[Token, ...], ...]
    field: str | None = None
    negated: bool = False
    phrase: tuple[str, ...] | None = None

    def tokens(self) -> list[Token]:
        return [token for group in self.alternatives for token in group]


@dataclass
class Range:
    min: float | None = None
    max: float | None = None

    def narrow(self, low: float | None, high: float | None) -> None:
        if low is not None:
            self.min = low if self.min is None else max(self.min, low)
        if high is not None:
            self.max = high if self.max is None else min(self.max, high)


@dataclass
class ParsedQuery:
    terms: list[Term] = field(default_factory=list)
    formats: list[str] = field(default_factory=list)  # any of
    excluded_formats: list[str] = field(default_factory=list)
    year: Range | None = None
    duration: Range | None = None  # seconds
    added: tuple[datetime | None, datetime | None] | None = None

    @property
    def positive(self) -> list[Term]:
        return [term for term in self.terms if not term.negated]

    @property
    def negative(self) -> list[Term]:
        return [term for term in self.terms if term.negated]

    @property
    def has_text(self) -> bool:
        return bool(self.positive)


# --- parser ------------------------------------------------------------------------------------

# One lexical item: optional '-', optional 'field:', then a "quoted" value or a bare run.
_ITEM = re.compile(
    r"""(?P<neg>-)?(?:(?P<field>[^\W\d_][\w]*):)?(?:"(?P<quoted>[^"]*)(?P<closed>"?)|(?P<bare>[^\s"]+))""",
)

_NUMBER = r"\d+(?:\.\d+)?"
_DURATION_VALUE = re.compile(rf"^(?:(\d+):)?(\d+):(\d{{1,2}}(?:\.\d+)?)$|^({_NUMBER})$")
_RELATIVE = re.compile(r"^-?(\d+)([hdwmy])$")
_DATE = re.compile(r"^\d{4}-\d{2}(?:-\d{2})?$")
_RELATIVE_UNITS: dict[str, timedelta] = {
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
    "w": timedelta(weeks=1),
    "m": timedelta(days=30),
    "y": timedelta(days=365),
}


def _word_term(word: str, *, prefix: bool, field_name: str | None, negated: bool) -> Term | None:
    """The term for one typed word, or None when nothing searchable is left (``&|!``)."""
    tokens = word_tokens(word)
    if not tokens.main:
        return None
    main = tuple(
        Token(text, prefix=(prefix and i == len(tokens.main) - 1) or text in tokens.single_cjk)
        for i, text in enumerate(tokens.main)
    )
    alternatives: tuple[tuple[Token, ...], ...] = (main,)
    if tokens.joined:
        alternatives = ((Token(tokens.joined, prefix=prefix),), main)
    return Term(alternatives=alternatives, field=field_name, negated=negated)


def _phrase_term(text: str, *, field_name: str | None, negated: bool) -> Term | None:
    tokens: list[str] = []
    for word in fold(text).split():
        tokens.extend(word_tokens(word).main)
    tokens = tokens[:MAX_PHRASE_TOKENS]
    if not tokens:
        return None
    if len(tokens) == 1:
        return Term(alternatives=((Token(tokens[0]),),), field=field_name, negated=negated)
    return Term(
        alternatives=(tuple(Token(text) for text in tokens),),
        field=field_name,
        negated=negated,
        phrase=tuple(tokens),
    )


def _parse_year(value: str) -> tuple[float | None, float | None] | None:
    value = value.strip()
    decade = re.fullmatch(r"(\d{3})0s", value)
    if decade:
        start = int(decade.group(1)) * 10
        return float(start), float(start + 9)
    return _parse_range(value, lambda text: float(int(text)) if re.fullmatch(r"\d{1,4}", text) else None)


def _duration_seconds(text: str) -> float | None:
    match = _DURATION_VALUE.match(text)
    if not match:
        return None
    if match.group(4) is not None:
        return float(match.group(4))
    hours = int(match.group(1) or 0)
    return hours * 3600 + int(match.group(2)) * 60 + float(match.group(3))


def _parse_duration(value: str) -> tuple[float | None, float | None] | None:
    return _parse_range(value, _duration_seconds)


def _parse_range(value: str, convert: Any) -> tuple[float | None, float | None] | None:
    """``a..b``, ``a..``, ``..b`` or ``a`` (exactly a); None when a bound does not convert."""
    if ".." in value:
        low_text, _, high_text = value.partition("..")
        if not low_text and not high_text:
            return None
        low = convert(low_text) if low_text else None
        high = convert(high_text) if high_text else None
        if (low_text and low is None) or (high_text and high is None):
            return None
        return low, high
    exact = convert(value) if value else None
    if exact is None:
        return None
    return exact, exact


def _parse_instant(text: str, now: datetime, *, end: bool) -> datetime | None:
    relative = _RELATIVE.match(text)
    if relative:
        try:
            return now - int(relative.group(1)) * _RELATIVE_UNITS[relative.group(2)]
        except (OverflowError, ValueError):
            return datetime.min.replace(tzinfo=UTC)  # "added in the last million years": everything
    if _DATE.match(text):
        parts = [int(part) for part in text.split("-")]
        try:
            start = datetime(parts[0], parts[1], parts[2] if len(parts) > 2 else 1, tzinfo=UTC)
        except ValueError:
            return None
        if not end:
            return start
        if len(parts) > 2:
            return start + timedelta(days=1) - timedelta(microseconds=1)
        next_month = datetime(start.year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=UTC)
        return next_month - timedelta(microseconds=1)
    return None


def _parse_added(value: str, now: datetime) -> tuple[datetime | None, datetime | None] | None:
    if ".." in value:
        low_text, _, high_text = value.partition("..")
        if not low_text and not high_text:
            return None
        low = _parse_instant(low_text, now, end=False) if low_text else None
        high = _parse_instant(high_text, now, end=True) if high_text else None
        if (low_text and low is None) or (high_text and high is None):
            return None
        return low, high
    if _RELATIVE.match(value):  # "added:-7d" means "in the last 7 days"
        return _parse_instant(value, now, end=False), None
    low = _parse_instant(value, now, end=False)
    if low is None:
        return None
    return low, _parse_instant(value, now, end=True)


def parse_query(text: str | None, *, now: datetime | None = None) -> ParsedQuery:
    """Parse anything a person may type. Never raises; unknown syntax becomes plain words."""
    now = now or datetime.now(UTC)
    parsed = ParsedQuery()
    if not text:
        return parsed
    text = text[:MAX_QUERY_CHARS]
    # A query that ends in a space is finished; otherwise its last word is still being typed.
    typing = not text[-1:].isspace()
    items = list(_ITEM.finditer(text))
    for index, match in enumerate(items):
        if len(parsed.terms) >= MAX_TERMS:
            break
        last = index == len(items) - 1
        negated = bool(match.group("neg"))
        raw_field = match.group("field")
        field_name = FIELD_ALIASES.get(raw_field.casefold(), raw_field.casefold()) if raw_field else None
        quoted = match.group("quoted")
        bare = match.group("bare")
        value = quoted if quoted is not None else bare or ""
        if field_name is not None and field_name not in TEXT_FIELDS | KEYWORD_FIELDS | RANGE_FIELDS:
            # Not a field we know (``feat:someone``, ``12:30``): the whole thing is plain text.
            value = f"{raw_field}:{value}"
            field_name = None
        if field_name in RANGE_FIELDS and _apply_range(parsed, field_name, value, negated, now):
            continue
        if field_name in KEYWORD_FIELDS and value.strip():
            values = [fold(part).strip().lstrip(".") for part in value.split(",")]
            target = parsed.excluded_formats if negated else parsed.formats
            target.extend(part for part in values if part)
            continue
        if field_name in RANGE_FIELDS or field_name in KEYWORD_FIELDS:
            value = f"{raw_field}:{value}"  # a range that did not parse: plain words
            field_name = None
        if quoted is not None and match.group("closed"):
            term = _phrase_term(value, field_name=field_name, negated=negated)
            if term is not None:
                parsed.terms.append(term)
            continue
        # Bare words (and an unclosed quote, which is read as plain words).
        words = fold(value).split()
        for position, word in enumerate(words):
            prefix = typing and last and position == len(words) - 1 and not negated
            term = _word_term(word, prefix=prefix, field_name=field_name, negated=negated)
            if term is not None and len(parsed.terms) < MAX_TERMS:
                parsed.terms.append(term)
    return _narrow_lone_prefix(parsed)


def _narrow_lone_prefix(parsed: ParsedQuery) -> ParsedQuery:
    """A query whose only text is one short word being typed matches that word exactly."""
    positive = parsed.positive
    if len(positive) != 1 or positive[0].phrase:
        return parsed
    term = positive[0]
    short = any(
        token.prefix and len(token.text) < MIN_LONE_PREFIX_CHARS and not any(_is_cjk(ch) for ch in token.text)
        for token in term.tokens()
    )
    if not short:
        return parsed
    alternatives = tuple(
        tuple(
            Token(token.text, prefix=False, fuzzy=token.fuzzy)
            if len(token.text) < MIN_LONE_PREFIX_CHARS and not any(_is_cjk(ch) for ch in token.text)
            else token
            for token in group
        )
        for group in term.alternatives
    )
    terms = [replace(t, alternatives=alternatives) if t is term else t for t in parsed.terms]
    parsed.terms = terms
    return parsed


def _apply_range(parsed: ParsedQuery, name: str, value: str, negated: bool, now: datetime) -> bool:
    """Record a range filter; False when ``value`` is not a range (the caller falls back to words)."""
    if negated:
        return False
    if name == "year":
        bounds = _parse_year(value)
        if bounds is None:
            return False
        parsed.year = parsed.year or Range()
        parsed.year.narrow(*bounds)
        return True
    if name == "duration":
        bounds = _parse_duration(value)
        if bounds is None:
            return False
        low, high = bounds
        if low is not None and high is not None and low == high and ".." not in value:
            high = low + 0.999  # "duration:3:00" means three minutes and some milliseconds
        parsed.duration = parsed.duration or Range()
        parsed.duration.narrow(low, high)
        return True
    added = _parse_added(value, now)
    if added is None:
        return False
    if parsed.added is not None:
        low = max(filter(None, (parsed.added[0], added[0])), default=None)
        high = min(filter(None, (parsed.added[1], added[1])), default=None)
        added = (low, high)
    parsed.added = added
    return True


# --- fuzzy matching (shared by both engines) ------------------------------------------------------


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


SortOrder = Literal["asc", "desc"]


def iter_tokens(terms: Iterable[Term]) -> Iterable[Token]:
    for term in terms:
        yield from term.tokens()
