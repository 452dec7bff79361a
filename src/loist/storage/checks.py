"""Argument checks shared by every backend, so they accept and refuse exactly the same input.

Keys are built by :func:`loist.storage.base.audio_key` / :func:`~loist.storage.base.thumbnail_key`,
but a key can also arrive from a database row or a request, so each backend checks it before it
touches a path or a URL. The rule is deliberately narrow: ASCII letters, digits, ``.``, ``_``, ``-``
and ``/`` separators; no empty, ``.`` or ``..`` segments; no segment starting with ``.`` (the local
backend keeps its temp files and metadata under dot-names, so they can never collide with a blob).
"""

from __future__ import annotations

import re

from loist.errors import InvalidArgument

DEFAULT_CONTENT_TYPE = "application/octet-stream"  # what a blob stored with content_type=None reports
MAX_KEY_LENGTH = 1024  # GCS's own limit on object names (bytes)

_ALLOWED = re.compile(r"[A-Za-z0-9._/-]+")


def validate_key(key: object) -> str:
    """Return ``key`` unchanged when it is a safe blob key; raise :class:`InvalidArgument` otherwise."""
    if not isinstance(key, str) or not key:
        raise InvalidArgument("blob key must be a non-empty string", details={"key": repr(key)[:100]})
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidArgument(f"blob key is longer than {MAX_KEY_LENGTH} characters")
    if "\\" in key:
        raise InvalidArgument("blob key must not contain backslashes", details={"key": key})
    if not _ALLOWED.fullmatch(key):
        raise InvalidArgument(
            "blob key may only contain letters, digits, '.', '_', '-' and '/'", details={"key": key}
        )
    if key.startswith("/"):
        raise InvalidArgument("blob key must be relative (no leading '/')", details={"key": key})
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidArgument("blob key has an empty, '.' or '..' segment", details={"key": key})
        if segment.startswith("."):
            raise InvalidArgument("blob key segments must not start with '.'", details={"key": key})
    return key


def check_range(size: int, start: int, end: int | None) -> tuple[int, int]:
    """Validate an inclusive byte range against a blob's size; return ``(start, last)``.

    ``end=None`` means "to the end"; an ``end`` past the last byte is clamped, as HTTP does. A
    whole-blob read of an empty blob is allowed and returns ``(0, -1)`` (nothing to read). Anything
    else that selects no bytes is :class:`InvalidArgument`: the HTTP layer answers 416 itself before
    calling, so reaching here with such a range is a programming error worth a clear message.
    """
    if isinstance(start, bool) or not isinstance(start, int):
        raise InvalidArgument(f"range start must be an integer, got {start!r}")
    if end is not None and (isinstance(end, bool) or not isinstance(end, int)):
        raise InvalidArgument(f"range end must be an integer or None, got {end!r}")
    if start < 0:
        raise InvalidArgument(f"range start must be >= 0, got {start}")
    if end is not None and end < start:
        raise InvalidArgument(f"range end {end} is before start {start}")
    if size == 0 and start == 0 and end is None:
        return 0, -1
    if start >= size:
        raise InvalidArgument(f"range start {start} is beyond the blob's last byte (size {size})")
    last = size - 1 if end is None else min(end, size - 1)
    return start, last


def check_read_range(size: int, start: int, end: int, limit: int) -> tuple[int, int]:
    """:func:`check_range` for ``read_range``: ``end`` is required and the range is at most ``limit`` bytes."""
    if end is None or isinstance(end, bool) or not isinstance(end, int):
        raise InvalidArgument(f"read_range needs an integer end, got {end!r}")
    if isinstance(start, int) and not isinstance(start, bool) and end - start + 1 > limit:
        raise InvalidArgument(
            f"read_range reads at most {limit} bytes, asked for {end - start + 1}: stream larger ranges"
        )
    return check_range(size, start, end)
