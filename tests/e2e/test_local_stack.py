"""``scripts/local-stack``: the compose stack without Docker, run as a real subprocess.

The session's stack (``local_stack``, on the local PostgreSQL server with a fresh database) is
shared with the deployment-check tests; its teardown proves SIGTERM stops everything and drops
the database. The throwaway-cluster path (``initdb`` + ``pg_ctl``, as the postgres user when the
tests run as root) gets its own stack here.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.localstack import SCRIPT, RunningStack, start_stack
from tests.support.polling import poll_until

# One worker runs every test on the session's stack (pytest -n 2 --dist loadgroup): one stack, not two.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local_stack")]


def port_open(url: str) -> bool:
    parts = urlsplit(url)
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex((parts.hostname or "127.0.0.1", parts.port or 80)) == 0


def test_stack_is_ready_on_postgresql_and_gcs(local_stack: RunningStack) -> None:
    ready = httpx.get(f"{local_stack.base_url}/health/ready", timeout=10)
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert checks["database"]["dialect"] == "postgresql"
    assert checks["storage"]["backend"] == "gcs"
    assert local_stack.info["database_mode"] == "fresh-database"
    assert local_stack.info["mcp_url"] == f"{local_stack.base_url}/mcp"


def test_stack_requires_its_generated_token(local_stack: RunningStack) -> None:
    token = local_stack.token
    assert len(token) >= 32
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    anonymous = httpx.post(f"{local_stack.base_url}/mcp", json=body, headers=headers, timeout=10)
    assert anonymous.status_code == 401
    authed = httpx.post(f"{local_stack.base_url}/mcp", json=body, timeout=10,
                        headers=headers | {"Authorization": f"Bearer {token}"})
    assert authed.status_code == 200


def test_env_file_runs_loist_commands_against_the_stack(local_stack: RunningStack) -> None:
    assert local_stack.env_file.stat().st_mode & 0o077 == 0, "the env file holds the token: owner-only"
    env = local_stack.env
    assert env["BEARER_TOKEN"] == local_stack.token
    assert env["LOIST_BASE_URL"] == local_stack.base_url
    assert env["STORAGE_BACKEND"] == "gcs" and env["STORAGE_EMULATOR_HOST"] == local_stack.info["emulator_url"]
    done = subprocess.run(
        [sys.executable, "-m", "loist", "db", "current", "--json"],
        env=local_stack.command_env(), capture_output=True, text=True, timeout=60, cwd=local_stack.env_file.parent,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["up_to_date"] is True


def test_observability_runs_prometheus_scraping_the_server(local_stack: RunningStack) -> None:
    from loist.ops import prometheus

    url = local_stack.info["prometheus_url"]
    assert httpx.get(local_stack.info["metrics_url"], timeout=10).status_code == 200
    assert httpx.get(f"{local_stack.base_url}/metrics", timeout=10).status_code == 404
    # it scrapes the server's listener every 5 s: poll its API (bounded) for the first scrape
    poll_until(lambda: bool(prometheus.query(url, 'loist_build_info{job="loist"}')), timeout_s=60,
               what="Prometheus stores a scrape of the stack's server")
    assert prometheus.targets_up(url)


def test_help_documents_the_options() -> None:
    done = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for option in ("--database-url", "--pg-server", "--env-file", "--json", "--port", "--observability"):
        assert option in done.stdout


def test_conflicting_database_options_are_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SCRIPT), "--database-url", "postgresql://x@127.0.0.1/db", "--pg-server", "postgresql://x@127.0.0.1"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "not both" in done.stderr


def _can_make_clusters() -> str | None:
    if shutil.which("initdb") is None and not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        return "no initdb: PostgreSQL server binaries are not installed"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a postgres user: initdb cannot run"
    return None


def test_throwaway_cluster_is_created_and_removed_on_sigterm(tmp_path: Path) -> None:
    reason = _can_make_clusters()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    with start_stack(tmp_path, env=env) as stack:
        assert stack.info["database_mode"] == "throwaway-cluster"
        ready = httpx.get(f"{stack.base_url}/health/ready", timeout=10).json()
        assert ready["checks"]["database"]["dialect"] == "postgresql"
        db_url = stack.info["database_url"]
        pg_port = f"http://127.0.0.1:{urlsplit(db_url).port}"
        assert port_open(pg_port) and port_open(stack.base_url) and port_open(stack.info["emulator_url"])
        workdir = Path(stack.info["workdir"])
        assert (workdir / "pgdata" / "PG_VERSION").exists()
    assert stack.proc.returncode == 0
    assert not workdir.exists(), "the throwaway cluster's folder was left behind"
    assert not port_open(pg_port), "PostgreSQL still listens after the stack stopped"
    assert not port_open(stack.base_url), "loist serve still listens after the stack stopped"
    assert not port_open(stack.info["emulator_url"]), "the GCS emulator still listens after the stack stopped"
    assert not stack.env_file.exists(), "the env file (it holds the token) outlived the stack"
