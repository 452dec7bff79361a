"""The one text fold and tokenizer (pure functions: no database): index tokens, genre keys, trigrams."""

from __future__ import annotations

import pytest

from loist.catalog.query import parse_query
from loist.catalog.text import (
    MAX_TOKEN_CHARS,
    fold,
    genre_rows,
    index_text,
    index_tokens,
    normalize_genre,
    similarity,
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Sigur Rós", ["sigur", "ros"]),
        ("AC/DC", ["ac", "dc", "acdc"]),
        ("R.E.M.", ["r", "e", "m", "rem"]),
        ("Guns N' Roses", ["guns", "n", "roses"]),
        ("Motörhead", ["motorhead"]),
        ("MØ", ["mo"]),
        ("Straße", ["strasse"]),
        ("東京タワー", ["東京", "京タ", "タワ", "ワー", "ー"]),
        ("안녕", ["안녕", "녕"]),
        ("Кино", ["кино"]),
        ("فيروز", ["فيروز"]),
        ("🔥 fire", ["🔥", "fire"]),
        ("ｆｕｌｌｗｉｄｔｈ", ["fullwidth"]),
        ("a" * 100, ["a" * MAX_TOKEN_CHARS]),
        ("", []),
        ("&|! -- ...", []),
    ],
)
def test_index_tokens(text: str, tokens: list[str]) -> None:
    assert index_tokens(text) == tokens


# Letters NFKD does not split (ø æ œ ł đ ð þ ı ß), accents, case and spacing: one key each.
GENRE_KEYS = [
    ("Søren", "soren"),
    ("Æther", "aether"),
    ("Œuvre", "oeuvre"),
    ("Łódź", "lodz"),
    ("Đorđe", "dorde"),
    ("Þórður Guðmundsson", "thordur gudmundsson"),
    ("Dısco", "disco"),  # dotless ı
    ("Straße", "strasse"),
    ("STRASSE", "strasse"),
    ("Électro  Pop", "electro pop"),
    ("MiXeD cAsE", "mixed case"),
    ("  Hip-Hop\t", "hip-hop"),
    ("안녕", "안녕"),  # Hangul stays composed
]


@pytest.mark.parametrize(("genre", "key"), GENRE_KEYS)
def test_a_genre_key_is_the_fold_with_its_whitespace_collapsed(genre: str, key: str) -> None:
    assert normalize_genre(genre) == key
    assert normalize_genre(genre) == " ".join(fold(genre).split())


@pytest.mark.parametrize(("genre", "key"), GENRE_KEYS)
def test_a_genre_key_and_the_query_language_fold_alike(genre: str, key: str) -> None:
    """What ``genre:`` matches (index tokens of the genre, tokens of the typed key) and the key a
    filter or facet uses come from the same fold."""
    typed = [token.text for term in parse_query(f'genre:"{key}" ').terms for token in term.tokens()]
    assert set(typed) <= set(index_text(genre).split())
    assert index_tokens(key) == index_tokens(genre)


def test_genres_that_fold_together_keep_the_first_spelling() -> None:
    assert genre_rows(["Søren", "Soren", "SØREN", "  ", "Straße", "strasse"]) == [
        ("Søren", "soren"),
        ("Straße", "strasse"),
    ]


def test_similarity_is_pg_trgm_similarity() -> None:
    # SELECT similarity('beyonse', 'beyonce') -> 0.45454547 on PostgreSQL
    assert similarity("beyonse", "beyonce") == pytest.approx(0.4545, abs=1e-3)
    assert similarity("word", "word") == 1.0
    assert similarity("abc", "xyz") == 0.0
