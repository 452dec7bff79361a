"""``loist serve`` options (``loist.cli.server``); the running server is tested in tests/e2e."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from loist.errors import EXIT_CODE, ErrorCode
from tests.cli.conftest import run


def test_serve_refuses_an_unknown_transport_before_serving() -> None:
    code, out, _ = run("serve", "--transport", "carrier-pigeon", "--json")
    assert code == EXIT_CODE[ErrorCode.CONFIG_INVALID]
    error = json.loads(out)["error"]
    assert error["code"] == "CONFIG_INVALID" and "server_transport" in error["message"]


def _serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "loist", "serve", *args], env={**os.environ, **env},
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)


def test_serve_on_an_unmigrated_database_is_database_failed_before_listening(fresh_pg_url: str) -> None:
    for transport in ("http", "stdio"):
        done = _serve({"DATABASE_URL": fresh_pg_url}, "--transport", transport, "--port", "0")
        assert done.returncode == EXIT_CODE[ErrorCode.DATABASE_FAILED], done.stderr
        assert "DATABASE_FAILED: the database schema is empty" in done.stderr and "loist db upgrade" in done.stderr
        assert "Traceback" not in done.stderr and "listening on" not in done.stderr


def test_serve_on_a_port_in_use_says_so_before_listening(embedded: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve({"LOIST_DATA_DIR": str(embedded)}, "--port", str(port))
    assert done.returncode == EXIT_CODE[ErrorCode.CONFIG_INVALID]
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in done.stderr and "--port" in done.stderr
    assert "listening on" not in done.stderr and "Traceback" not in done.stderr
