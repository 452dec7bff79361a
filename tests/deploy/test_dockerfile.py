"""The Dockerfile: hadolint, its structure, and its HEALTHCHECK and CMD actually run.

No Docker engine here: the HEALTHCHECK command runs against a loopback server and the CMD runs
with a stand-in ``loist`` on PATH, which is exactly what the container would execute.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    items = instructions()
    last_from = max(i for i, (k, _) in enumerate(items) if k == "FROM")
    return items[last_from:]


def test_hadolint_is_clean() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_multi_stage_slim_pinned_base_non_root() -> None:
    items = instructions()
    args = dict(a.split("=", 1) for k, a in items if k == "ARG" and "=" in a)
    froms = [a for k, a in items if k == "FROM"]
    assert len(froms) >= 2 and all(" AS " in f.upper() for f in froms)
    base = args["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11[\w.]*-slim(-bookworm)?", base), base
    stage = final_stage()
    users = [a for k, a in stage if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # Nothing runs as root after the switch, and the venv comes from the build stage.
    after_user = stage[[k for k, _ in stage].index("USER") :]
    assert not [a for k, a in after_user if k == "RUN"]
    assert any(k == "COPY" and "--from=build" in a for k, a in stage)
    assert any(k == "RUN" and "ffmpeg" in a for k, a in stage)


def test_oci_labels_and_no_secrets() -> None:
    labels = " ".join(a for k, a in final_stage() if k == "LABEL")
    for key in ("title", "description", "source", "licenses", "version", "revision"):
        assert f"org.opencontainers.image.{key}=" in labels
    for keyword, arguments in instructions():
        if keyword in ("ENV", "ARG"):
            assert not re.search(r"(TOKEN|PASSWORD|SECRET|CREDENTIAL|DATABASE_URL)", arguments, re.I), (
                arguments
            )


def test_dockerignore_keeps_secrets_out_and_sources_in() -> None:
    lines = [
        ln.strip()
        for ln in (ROOT / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "deny by default"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    copied = set()
    for keyword, arguments in instructions():
        if keyword == "COPY" and "--from" not in arguments:
            copied.update(p.rstrip("/").removeprefix("./") for p in arguments.split()[:-1])
    assert copied and copied <= allowed, f"COPY sources excluded by .dockerignore: {copied - allowed}"
    assert {"**/.env", "**/.env.*"} <= set(lines)
    assert not any(".env" in a or "credentials" in a for a in allowed)


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        code = self.status if self.path == "/health/live" else 404
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], handler
    server.shutdown()
    server.server_close()


def _exec_form(keyword: str) -> list[str]:
    (arguments,) = [a for k, a in final_stage() if k == keyword]
    if keyword == "HEALTHCHECK":
        arguments = arguments[arguments.index("CMD") + 3 :].strip()
    return json.loads(arguments)


def test_healthcheck_probes_health_live_on_port(health_server: tuple[int, type[_Health]]) -> None:
    port, handler = health_server
    command = _exec_form("HEALTHCHECK")
    assert "/health/live" in " ".join(command)
    env = {**os.environ, "PORT": str(port)}
    command[0] = sys.executable
    assert subprocess.run(command, env=env, capture_output=True, timeout=30).returncode == 0
    handler.status = 503
    assert subprocess.run(command, env=env, capture_output=True, timeout=30).returncode != 0


def test_cmd_serves_http_on_port(tmp_path: Path) -> None:
    """The CMD passes Cloud Run's PORT to ``loist serve`` (a stand-in ``loist`` records argv)."""
    record = tmp_path / "argv.json"
    fake = tmp_path / "bin" / "loist"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\nimport json, sys\njson.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
    )
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "PORT": "9123"}
    done = subprocess.run(_exec_form("CMD"), env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(record.read_text()) == [
        "serve",
        "--transport",
        "http",
        "--host",
        "0.0.0.0",
        "--port",
        "9123",
    ]
