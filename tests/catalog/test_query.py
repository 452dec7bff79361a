"""The query parser (pure functions: no database)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from loist.catalog.query import MAX_QUERY_CHARS, MAX_TERMS, Token, parse_query

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _texts(query: str) -> list[list[list[str]]]:
    return [[[t.text for t in group] for group in term.alternatives] for term in parse_query(query, now=NOW).terms]


def test_the_last_word_is_a_prefix_only_while_typing() -> None:
    assert parse_query("pink flo", now=NOW).terms[-1].alternatives == ((Token("flo", prefix=True),),)
    assert parse_query("pink flo ", now=NOW).terms[-1].alternatives == ((Token("flo"),),)
    assert parse_query("pink", now=NOW).terms[0].alternatives == ((Token("pink", prefix=True),),)
    assert parse_query('"pink floyd"', now=NOW).terms[0].alternatives[0][-1].prefix is False


def test_punctuated_words_match_joined_or_split() -> None:
    assert _texts("ac/dc ") == [[["acdc"], ["ac", "dc"]]]
    assert _texts("r.e.m. ") == [[["rem"], ["r", "e", "m"]]]


def test_phrases_exclusions_and_fields() -> None:
    parsed = parse_query('"highway to hell" -live artist:"ac/dc" -genre:pop', now=NOW)
    phrase, live, artist, pop = parsed.terms
    assert phrase.phrase == ("highway", "to", "hell") and not phrase.negated
    assert live.negated and live.alternatives == ((Token("live"),),)
    assert artist.field == "artist" and artist.phrase == ("ac", "dc")
    assert pop.field == "genre" and pop.negated


@pytest.mark.parametrize(
    ("query", "year", "duration"),
    [
        ("year:1990..1999", (1990, 1999), None),
        ("year:2000..", (2000, None), None),
        ("year:..1980", (None, 1980), None),
        ("year:1990s", (1990, 1999), None),
        ("year:1995", (1995, 1995), None),
        ("duration:..4:30", None, (None, 270)),
        ("duration:120..300", None, (120, 300)),
        ("duration:1:02:03..", None, (3723, None)),
        ("duration:3:00", None, (180, 180.999)),
        ("year:1990..1999 year:1995..2005", (1995, 1999), None),
    ],
)
def test_ranges(query: str, year: tuple | None, duration: tuple | None) -> None:
    parsed = parse_query(query, now=NOW)
    assert parsed.terms == []
    assert (None if parsed.year is None else (parsed.year.min, parsed.year.max)) == year
    assert (None if parsed.duration is None else (parsed.duration.min, parsed.duration.max)) == duration


def test_added_ranges() -> None:
    assert parse_query("added:-7d..", now=NOW).added == (NOW - timedelta(days=7), None)
    assert parse_query("added:-2w", now=NOW).added == (NOW - timedelta(weeks=2), None)
    low, high = parse_query("added:2026-01-01..2026-01-31", now=NOW).added or (None, None)
    assert low == datetime(2026, 1, 1, tzinfo=UTC)
    assert high is not None and high.date().isoformat() == "2026-01-31" and high.hour == 23
    low, high = parse_query("added:2026-02", now=NOW).added or (None, None)
    assert (low, high and high.day) == (datetime(2026, 2, 1, tzinfo=UTC), 28)


@pytest.mark.parametrize("query", ["year:abc", "year:19999", "duration:abc..", "added:yesterday", "year:..", "-year:1990"])
def test_malformed_ranges_fall_back_to_words(query: str) -> None:
    parsed = parse_query(query, now=NOW)
    assert parsed.year is None and parsed.duration is None and parsed.added is None
    assert parsed.terms, "the text is searched as words instead"


def test_format_keywords() -> None:
    parsed = parse_query("format:FLAC,.mp3 -format:wav ext:ogg", now=NOW)
    assert parsed.formats == ["flac", "mp3", "ogg"]
    assert parsed.excluded_formats == ["wav"]


@pytest.mark.parametrize(
    "query",
    ["(", ")", '"', "'", "&|!", "-", ":", "\\", "\x00", "🎵", "x" * 100_000, '"unclosed phrase', "a:b:c",
     "title:", '-"', "year:1990..1980", "added:-999999999999y"],
)
def test_any_string_parses(query: str) -> None:
    parse_query(query, now=NOW)


def test_unclosed_quote_reads_as_words() -> None:
    assert _texts('"pink floyd') == [[["pink"]], [["floyd"]]]


def test_limits() -> None:
    parsed = parse_query(" ".join(f"w{n}" for n in range(1000)), now=NOW)
    assert len(parsed.terms) == MAX_TERMS
    parsed = parse_query("x " * MAX_QUERY_CHARS + "needle", now=NOW)
    assert all(token.text != "needle" for term in parsed.terms for token in term.tokens())


def test_every_documented_example_parses_to_something() -> None:
    """docs/search.md's query table cannot drift into syntax the parser ignores."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "search.md").read_text()
    table = doc.split("| You type | It finds |", 1)[1].split("\n\n", 1)[0]
    examples = [example for line in table.splitlines()[2:] for example in re.findall(r"`([^`]+)`", line.split("|")[1])]
    assert len(examples) > 30
    for example in examples:
        parsed = parse_query(example, now=NOW)
        assert parsed.terms or parsed.formats or parsed.excluded_formats or parsed.year or parsed.duration or parsed.added, example
