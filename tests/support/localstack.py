"""Shared test fixtures (localstack): ``scripts/local-stack`` as a real subprocess.

- ``start_stack(*args)``: a context manager that runs ``scripts/local-stack --json --env-file F
  *args``, waits for its one JSON line (printed once ``/health/ready`` answered 200), yields a
  :class:`RunningStack`, then sends SIGTERM and waits for it to stop everything.
- ``local_stack`` (session): one stack per test session (per xdist worker) on the local
  PostgreSQL server (a fresh database, dropped on exit) and an in-memory GCS emulator. Its
  teardown asserts that the database and the work folder are gone.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.pg import PG_SERVER, _unavailable

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "local-stack"
START_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 60.0


@dataclass
class RunningStack:
    info: dict[str, str]
    env: dict[str, str]  # the env file's variables (what `source` would set)
    env_file: Path
    proc: subprocess.Popen[str]

    @property
    def base_url(self) -> str:
        return self.info["base_url"]

    @property
    def token(self) -> str:
        return self.info["token"]

    def command_env(self, **extra: str) -> dict[str, str]:
        """This process's environment plus the stack's settings (to run ``loist`` against it)."""
        return {**os.environ, **self.env, **extra}


def read_env_file(path: Path) -> dict[str, str]:
    import shlex

    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            out[key] = value
    return out


def _first_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The first stdout line, or fail with the process's stderr (no fixed sleeps: select on the pipe)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if sel.select(timeout=max(0.0, deadline - time.monotonic())):
                line = proc.stdout.readline()
                if line:
                    return line
                break  # EOF: the stack exited
        proc.kill()
        _, stderr = proc.communicate(timeout=STOP_TIMEOUT_S)
        pytest.fail(f"local-stack did not become ready (exit {proc.returncode}):\n{stderr[-3000:]}")
    finally:
        sel.close()


@contextmanager
def start_stack(tmp_dir: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[RunningStack]:
    env_file = tmp_dir / "stack.env"
    proc = subprocess.Popen(  # noqa: S603 - our own script
        [str(SCRIPT), "--json", "--env-file", str(env_file), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env if env is not None else {k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        cwd=tmp_dir,
    )
    try:
        info = json.loads(_first_line(proc, START_TIMEOUT_S))
        stack = RunningStack(info=info, env=read_env_file(env_file), env_file=env_file, proc=proc)
        yield stack
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def database_exists(name: str) -> bool:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    try:  # like the pg fixtures: skipped without a server locally, a failure in CI
        psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        _unavailable(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    tmp = tmp_path_factory.mktemp("local-stack")
    # One stack serves the whole session from 127.0.0.1, and several tests fail its bearer check on
    # purpose (wrong or no token): past RATE_LIMIT_AUTH_FAILURES' default they would get 429
    # instead of the 401 they check. That limit is tested in tests/web/test_ratelimit.py.
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {"RATE_LIMIT_AUTH_FAILURES": "1000/minute"}
    with start_stack(tmp, "--pg-server", PG_SERVER, env=env) as stack:
        yield stack
    database = stack.info["database_url"].rsplit("/", 1)[1]
    assert stack.proc.returncode == 0, "local-stack did not exit cleanly on SIGTERM"
    assert not database_exists(database), f"local-stack left its database {database} behind"
    assert not Path(stack.info["workdir"]).exists(), "local-stack left its work folder behind"
