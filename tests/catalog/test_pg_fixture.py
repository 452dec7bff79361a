"""The PostgreSQL fixtures skip when the server is missing locally, and FAIL in CI (never skip)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARGET = "tests/catalog/test_store.py::test_add_then_get_round_trips_every_field"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_with_missing_server(ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("PYTEST_")}
    env["LOIST_TEST_PG_SERVER"] = f"postgresql://postgres@127.0.0.1:{_closed_port()}"
    if ci:
        env["CI"] = "true"
    return subprocess.run(
        [sys.executable, "-m", "pytest", TARGET, "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("ci", [False, True], ids=["local", "ci"])
def test_missing_postgresql_skips_locally_and_fails_in_ci(ci: bool) -> None:
    done = _run_with_missing_server(ci)
    output = done.stdout + done.stderr
    if ci:
        assert done.returncode != 0, output
        assert "never skip in CI" in output
        assert "1 passed" in output  # the SQLite variant still ran
    else:
        assert done.returncode == 0, output
        assert "1 passed, 1 skipped" in output
