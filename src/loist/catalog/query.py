"""The search query language (pure: no database).

:func:`parse_query` turns what a person typed into :class:`ParsedQuery`, with the tokenizer that
filled the ``search_*`` columns (:mod:`loist.catalog.text`), so a query's tokens are the index's.
Free words (the last one is a prefix while the user types), ``"quoted phrases"``, ``-excluded``
words, ``field:value`` and ranges (``year:1990..1999``, ``duration:..4:30``, ``added:-7d..``). Any
string parses: a part that does not make sense falls back to plain words, and nothing raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from loist.catalog.text import SEARCH_FIELDS, fold, is_cjk, word_tokens

# --- limits (a 10 KB query must cost no more than a short one) ------------------------------------

MAX_QUERY_CHARS = 1000  # the rest of a longer query is ignored
MAX_TERMS = 16  # text terms (words, phrases, field values) kept, in order
MAX_PHRASE_TOKENS = 12
# A lone word shorter than this is not expanded as a prefix: "br" alone would match (and rank) a
# fifth of the library. With other words it still is ("highway to he"): they narrow the matches.
MIN_LONE_PREFIX_CHARS = 3

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


# --- parsed query -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    text: str
    prefix: bool = False
    fuzzy: tuple[str, ...] = ()  # nearest vocabulary words, added by the fuzzy pass (matched exactly)
    edits: tuple[int, ...] = ()  # the typo pass: edits from the typed word to ``text``, then to each ``fuzzy``


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
        token.prefix and len(token.text) < MIN_LONE_PREFIX_CHARS and not any(is_cjk(ch) for ch in token.text)
        for token in term.tokens()
    )
    if not short:
        return parsed
    alternatives = tuple(
        tuple(
            Token(token.text, prefix=False, fuzzy=token.fuzzy)
            if len(token.text) < MIN_LONE_PREFIX_CHARS and not any(is_cjk(ch) for ch in token.text)
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
