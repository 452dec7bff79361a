"""The one opaque cursor codec of the catalog: listings and searches hand out ``next_cursor`` strings
made here, and read them back here.

A cursor is a JSON object, base64url-encoded without padding. What it carries is its user's business
(a listing: the last row's ``created_at`` and id; a search: its sort key, fingerprint and total), but
every cursor that cannot be read, is not an object, or does not carry what its user expects (damaged,
edited, or from another listing or search) is the same :func:`invalid_cursor` error.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

from loist.errors import InvalidArgument

CURSOR_HELP = (
    "invalid cursor: pass back the next_cursor of a previous page of the same listing or search "
    "(same query, filters and sort)"
)


def invalid_cursor() -> InvalidArgument:
    """The error for a cursor that is damaged, edited or from another listing or search."""
    return InvalidArgument(CURSOR_HELP)


def encode_cursor(payload: Mapping[str, Any]) -> str:
    """The opaque text of ``payload`` (JSON values only)."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def peek_cursor(cursor: str) -> dict[str, Any] | None:
    """The payload of ``cursor``; None when it is not one of ours (no error: see :func:`decode_cursor`)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, TypeError):  # binascii.Error, UnicodeError and JSONDecodeError are ValueErrors
        return None
    return data if isinstance(data, dict) else None


def decode_cursor(cursor: str) -> dict[str, Any]:
    """The payload of ``cursor``, or :func:`invalid_cursor` raised. Its user still checks the fields
    it needs (and raises the same error when one is missing or malformed)."""
    data = peek_cursor(cursor)
    if data is None:
        raise invalid_cursor()
    return data
