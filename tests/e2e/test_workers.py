"""``loist serve`` with ``WEB_WORKERS=2``: two worker processes share the port, both answer, a
signal to the parent stops them all gracefully; a database that cannot be opened fails once, before
any worker starts."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.liveserver import wait_until_live

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LOIST_", "DATABASE_", "DB_", "WEB_"))}
    clean.update(LOIST_DATA_DIR=str(tmp_path / "data"), WEB_WORKERS="2", LOG_LEVEL="WARNING", **env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path, env=clean, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{port}"


def workers(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    return [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]


def test_two_workers_serve_and_stop_with_the_parent(tmp_path: Path) -> None:
    proc, base = serve(tmp_path)
    try:
        wait_until_live(base, is_alive=lambda: proc.poll() is None, timeout_s=90)  # migrations, two starts
        children = workers(proc)
        assert len(children) == 2
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/health/ready").status_code == 200
            assert client.get("/embed/00000000-0000-0000-0000-000000000000").status_code == 404
        proc.send_signal(signal.SIGTERM)  # what Cloud Run sends; SIGINT takes the same path
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped" in err
        assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_database_that_cannot_open_fails_before_any_worker_starts(tmp_path: Path) -> None:
    proc, _ = serve(tmp_path, DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "DATABASE_FAILED" in err or "database" in err.lower()
    assert "Started server process" not in err


def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    proc, base = serve(tmp_path)
    try:
        wait_until_live(base, is_alive=lambda: proc.poll() is None, timeout_s=90)
        children = workers(proc)
        assert len(children) == 2
    finally:
        proc.kill()  # SIGKILL: no chance to pass a signal on
        proc.communicate()
    gone, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], f"workers outlived their killed parent: {[p.pid for p in alive]}"
