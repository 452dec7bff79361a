"""Error codes: every code maps to an HTTP status and an exit code, and the docs list them all."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from loist import errors
from loist.errors import EXIT_CODE, HTTP_STATUS, ErrorCode, LoistError, error_for_code

DOC = Path(__file__).resolve().parents[1] / "docs" / "operations.md"


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_has_a_class_status_and_exit_code(code: ErrorCode) -> None:
    exc = error_for_code(code, "msg")
    assert exc.code == code
    assert type(exc) is not LoistError
    assert 400 <= exc.http_status < 600
    assert exc.exit_code not in (0, 1)  # 0 is success, 1 is "some inputs failed"
    assert exc.to_dict() == {"code": str(code), "message": "msg"}


def test_exit_codes_are_distinct() -> None:
    assert len(set(EXIT_CODE.values())) == len(EXIT_CODE)


def test_operations_doc_lists_every_code_with_its_numbers() -> None:
    rows = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"^\| `([A-Z_]+)` \| (\d+) \| (\d+) \|", DOC.read_text(), re.M)}
    assert rows == {str(c): (HTTP_STATUS[c], EXIT_CODE[c]) for c in ErrorCode}


def test_str_carries_code() -> None:
    assert str(errors.NotFound("no track")) == "NOT_FOUND: no track"
