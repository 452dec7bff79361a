"""The Range header parser: the one place that decides which bytes a request gets."""

from __future__ import annotations

import pytest

from loist.web.stream import ByteRange, RangeNotSatisfiable, parse_range


# --- the parser --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 99)),
        ("bytes=100-", ByteRange(100, 999)),
        ("bytes=-500", ByteRange(500, 999)),
        ("bytes=-5000", ByteRange(0, 999)),  # a suffix longer than the blob is the whole blob
        ("bytes=990-5000", ByteRange(990, 999)),  # end clamped
        ("BYTES = 1-1", ByteRange(1, 1)),
        (None, None),
        ("", None),
        ("items=0-1", None),  # other units are ignored
        ("bytes=5-1", None),  # invalid: ignored, whole body
        ("bytes=abc", None),
        ("bytes=-", None),
        ("bytes=0-1,5-9", None),  # multi-range: answered with the whole body
    ],
)
def test_parse_range(header: str | None, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


def test_parse_range_empty_blob_suffix_is_unsatisfiable() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-10", 0)


