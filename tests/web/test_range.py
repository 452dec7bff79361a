"""The Range header parser: the one place that decides which bytes a request gets."""

from __future__ import annotations

import random
import re

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


# --- hostile headers: never anything but a range, None (ignored) or RangeNotSatisfiable -----------
HUGE = "9" * 5000  # int() refuses strings of more than 4,300 digits


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=²-", None),  # "²".isdigit() is True; it is not an HTTP digit
        ("bytes=0-¹", None),
        ("bytes=-³", None),
        ("bytes=½-", None),
        ("bytes=1_0-", None),  # int() accepts underscores
        ("bytes=+1-", None),  # ... and signs
        ("bytes=-+1", None),
        ("bytes=0x10-", None),
        ("bytes=1\u00a0-2", None),  # a no-break space is not HTTP whitespace
        ("bytes= 1 - 2 ", ByteRange(1, 2)),  # spaces and tabs around the numbers are tolerated
        (f"bytes=0-{HUGE}", ByteRange(0, 999)),  # an end past the blob is clamped
        (f"bytes=-{HUGE}", ByteRange(0, 999)),  # a suffix longer than the blob is the whole blob
        (f"bytes={'0' * 5000}5-{'0' * 5000}9", ByteRange(5, 9)),  # leading zeros are not magnitude
        (f"bytes={HUGE}-1", None),  # end before start: ignored
        ("bytes=" + "-" * 5000, None),
        ("bytes=" + "1-" * 3000, None),
    ],
)
def test_parse_range_hostile(header: str, expected: ByteRange | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", [f"bytes={HUGE}-", f"bytes={HUGE}-{HUGE}", f"bytes={'0' * 4999}1000-"])
def test_parse_range_huge_start_is_unsatisfiable(header: str) -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, 1000)


def _model(header: str, size: int) -> ByteRange | None | type[RangeNotSatisfiable]:
    """RFC 9110 section 14.1.2, written independently: one ``bytes=first-last`` range of ASCII digits."""
    m = re.fullmatch(r"[ \t]*bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*", header, re.I | re.A)
    if m is None or not (m[1] or m[2]):
        return None
    if not m[1]:
        suffix = int(m[2])
        return RangeNotSatisfiable if suffix == 0 or size == 0 else ByteRange(max(0, size - suffix), size - 1)
    first, last = int(m[1]), int(m[2]) if m[2] else None
    if last is not None and last < first:
        return None
    if first >= size:
        return RangeNotSatisfiable
    return ByteRange(first, size - 1 if last is None else min(last, size - 1))


# Pieces a hostile or broken client might send; every character is Latin-1, as ASGI hands headers over.
NOISE = [",", " ", "\t", "\u00a0", "²", "¹", "³", "½", "+", "_", "x", ";", "é", "\x00", "-", "=", "9" * 30, "0" * 30]


def _number(rng: random.Random) -> str:
    return rng.choice(["", "0", str(rng.randint(0, 12)), str(rng.randint(0, 2000)), "0" * rng.randint(1, 40) + "7"])


def _header(rng: random.Random) -> str:
    """Mostly well-formed ranges around the blob sizes below, with noise spliced in at random."""
    unit = rng.choice(["bytes", "BYTES", " bytes ", "items", ""])
    parts = [unit, "=", _number(rng), rng.choice(["-", "-", "-", ""]), _number(rng)]
    header = "".join(parts)
    for _ in range(rng.choice([0, 0, 1, 2])):
        at = rng.randint(0, len(header))
        header = header[:at] + rng.choice(NOISE) + header[at:]
    return header


def test_parse_range_agrees_with_the_rfc_model_on_random_headers() -> None:
    """A seeded property test (hypothesis is not a dependency): 20,000 generated headers, each
    parsed for four blob sizes, agree with the model and never raise anything unexpected."""
    rng = random.Random(16)
    outcomes: set[str] = set()
    for _ in range(5000):
        header = _header(rng)
        for size in (0, 1, 10, 1000):
            try:
                got: object = parse_range(header, size)
            except RangeNotSatisfiable:
                got = RangeNotSatisfiable
            assert got == _model(header, size), (header, size)
            if isinstance(got, ByteRange):
                assert 0 <= got.start <= got.end < size
            outcomes.add("range" if isinstance(got, ByteRange) else "416" if got is RangeNotSatisfiable else "none")
    assert outcomes == {"range", "416", "none"}  # the generator reaches every outcome
