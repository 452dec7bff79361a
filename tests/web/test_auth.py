"""The constant-time bearer check behind /mcp."""

from __future__ import annotations

import pytest

from loist.web.auth import token_matches

TOKEN = "s3cret-token-with-enough-length-0123456789"


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer  {TOKEN} ", True),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Basic {TOKEN}", False),
        (TOKEN, False),
        ("Bearer", False),
        ("", False),
        (None, False),
    ],
)
def test_token_matches(header: str | None, ok: bool) -> None:
    assert token_matches(header, TOKEN) is ok


def test_empty_expected_token_never_matches() -> None:
    assert token_matches("Bearer ", "") is False


