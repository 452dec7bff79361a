"""The ``loist`` command line: in-process (Typer's runner) for behaviour, real subprocesses for the
console script. Each test gets its own embedded library through LOIST_DATA_DIR."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loist.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def embedded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.startswith(("DB_", "GCS_", "DATABASE_", "STORAGE_", "AUTH_", "BEARER_", "ENVIRONMENT")):
            if name != "STORAGE_EMULATOR_HOST":  # kept: an ingest here may start the workers' fork server,
                monkeypatch.delenv(name, raising=False)  # which later GCS tests in this process reuse
    data = tmp_path / "data"
    monkeypatch.setenv("LOIST_DATA_DIR", str(data))
    monkeypatch.chdir(tmp_path)
    return data


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
