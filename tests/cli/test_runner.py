"""What every command shares (``loist.cli.runner``): settings, the library, errors to exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loist.errors import EXIT_CODE, ErrorCode
from loist.library.service import Library
from tests.cli.conftest import run
from tests.support.closes import record_closes


def test_invalid_configuration_stops_every_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_ENABLED", "true")
    code, out, _ = run("list", "--json")
    assert code == EXIT_CODE[ErrorCode.CONFIG_INVALID]
    assert json.loads(out)["error"]["code"] == "CONFIG_INVALID"


@pytest.fixture
def closed(monkeypatch: pytest.MonkeyPatch) -> list[Library]:
    return record_closes(monkeypatch)


def test_a_command_opens_one_library_and_closes_it_on_success_and_on_error(closed: list[Library]) -> None:
    code, out, _ = run("list", "--json")
    assert code == 0 and json.loads(out)["items"] == []
    assert len(closed) == 1
    code, out, _ = run("show", "00000000-0000-0000-0000-000000000000", "--json")
    assert code == EXIT_CODE[ErrorCode.NOT_FOUND] and json.loads(out)["error"]["code"] == "NOT_FOUND"
    assert len(closed) == 2  # the error left through the same door


def test_a_refused_value_is_config_invalid_and_nothing_is_opened(monkeypatch: pytest.MonkeyPatch, embedded: Path) -> None:
    monkeypatch.setenv("PORT", "not-a-port")
    code, out, _ = run("list", "--json")
    assert code == EXIT_CODE[ErrorCode.CONFIG_INVALID]
    error = json.loads(out)["error"]
    assert error["code"] == "CONFIG_INVALID" and "port" in error["message"]
    assert not embedded.exists()


def test_a_bad_argument_is_refused_before_the_library_opens(embedded: Path) -> None:
    code, out, err = run("list", "--status", "sideways")
    assert code == EXIT_CODE[ErrorCode.INVALID_ARGUMENT]
    assert "INVALID_ARGUMENT: unknown status 'sideways'" in err and out == ""
    assert not embedded.exists()
