"""Logging: JSON lines for Cloud Logging, text for people, secrets masked in every record."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from loist.config import Settings
from loist.logs import MASK, configure_logging


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_severity_and_mask_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings(
        log_format="json",
        log_level="DEBUG",
        bearer_token="tok-0123456789-secret",
        database_url="postgresql://loist:pg-password-42@db/loist",
        _env_file=None,
    )
    configure_logging(settings)
    log = logging.getLogger("loist.test")
    log.info("connecting with %s to %s", "tok-0123456789-secret", "postgresql://loist:pg-password-42@db/loist")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [entry["severity"] for entry in lines] == ["INFO", "ERROR"]
    assert lines[0]["logger"] == "loist.test"
    assert "tok-0123456789-secret" not in lines[0]["message"] and MASK in lines[0]["message"]
    assert "pg-password-42" not in lines[0]["message"]
    assert "ValueError: boom" in lines[1]["stack_trace"]


def test_text_format_and_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(log_level="WARNING", _env_file=None))
    configure_logging(Settings(log_level="WARNING", _env_file=None))  # idempotent: one handler
    logging.getLogger("loist.test").info("quiet")
    logging.getLogger("loist.test").warning("loud")
    err = capsys.readouterr().err
    assert "quiet" not in err
    assert err.count("loud") == 1 and "WARNING loist.test: loud" in err
