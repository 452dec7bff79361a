"""``scripts/refresh-staging`` and ``scripts/test-staging-deployment.sh`` against the local stack.

Staging itself cannot be reached from here, so the stack stands in for it: refresh-staging runs
its real steps (migrate, wipe, seed or import, the deployment check) on the stack's library, and
the staging wrapper gets the stack's URL and token from a fake ``gcloud`` earlier on PATH (the
Google control plane is the one thing mocked). The wrapper's ``gcloud`` command lines are also
checked against the installed Cloud SDK's command tree, so a wrong command or flag fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.localstack import ROOT, RunningStack

# One worker runs every test on the session's stack (pytest -n 2 --dist loadgroup): one stack, not two.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("local_stack")]

REFRESH = ROOT / "scripts" / "refresh-staging"
WRAPPER = ROOT / "scripts" / "test-staging-deployment.sh"

FAKE_GCLOUD = r'''#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as log:
    log.write(json.dumps(args) + "\n")
words = [a for a in args if not a.startswith("-")]
if words[:3] == ["run", "services", "describe"]:
    print(os.environ["FAKE_SERVICE_URL"])
elif words[:3] == ["secrets", "versions", "access"]:
    sys.stdout.write(os.environ["FAKE_SECRET"])
else:
    sys.stderr.write("fake gcloud: unexpected call " + " ".join(args) + "\n"); sys.exit(3)
'''


def count_tracks(stack: RunningStack, cwd: Path) -> int:
    """Rows in the stack's catalog, read straight from PostgreSQL (no subprocess)."""
    import psycopg

    with psycopg.connect(stack.info["database_url"], connect_timeout=10) as conn:
        row = conn.execute("SELECT count(*) FROM tracks WHERE status = 'COMPLETED'").fetchone()
    assert row is not None
    return int(row[0])


def refresh(stack: RunningStack, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in stack.env and k != "SMOKE_BEARER_TOKEN"}
    return subprocess.run([str(REFRESH), "--env-file", str(stack.env_file), "--base-url", stack.base_url, *args],
                          env=env, capture_output=True, text=True, timeout=600, cwd=cwd)


def test_refresh_staging_seeds_and_verifies_idempotently(local_stack: RunningStack, tmp_path: Path) -> None:
    first = refresh(local_stack, tmp_path, "--audio", "3", "--seed", "3")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "PASS: 13/13 checks passed" in first.stdout
    for step in ("== 1/3 migrate", "== 2/3 wipe and seed", "== 3/3 verify", "== staging refreshed"):
        assert step in first.stderr
    assert count_tracks(local_stack, tmp_path) == 3
    second = refresh(local_stack, tmp_path, "--audio", "3", "--seed", "3", "--no-verify")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "== 3/3 verify: skipped (--no-verify)" in second.stderr
    assert count_tracks(local_stack, tmp_path) == 3, "a second refresh must not add tracks"
    assert local_stack.token not in first.stdout + first.stderr + second.stdout + second.stderr


def test_refresh_staging_imports_an_export(local_stack: RunningStack, tmp_path: Path) -> None:
    seeded = subprocess.run([sys.executable, "-m", "loist", "seed", "--wipe", "--audio", "2", "--seed", "9"],
                            env=local_stack.command_env(), capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert seeded.returncode == 0, seeded.stderr
    export = tmp_path / "prod.jsonl"
    done = subprocess.run([sys.executable, "-m", "loist", "export", "--anonymize", "--salt", "s", str(export)],
                          env=local_stack.command_env(), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    imported = refresh(local_stack, tmp_path, "--import", str(export), "--blobs", "silence", "--no-verify")
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "== 2/3 wipe and import" in imported.stderr and "regenerated" in imported.stdout
    assert count_tracks(local_stack, tmp_path) == 2


def test_refresh_staging_refuses_production(tmp_path: Path) -> None:
    env_file = tmp_path / "prod.env"
    env_file.write_text("export ENVIRONMENT=production\n")
    done = subprocess.run([str(REFRESH), "--env-file", str(env_file), "--dry-run"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert done.returncode == 2
    assert "refusing" in done.stderr


def test_refresh_staging_dry_run_runs_nothing(tmp_path: Path) -> None:
    done = subprocess.run([str(REFRESH), "--dry-run", "--import", "x.jsonl", "--source-bucket", "prod-bucket"],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path,
                          env={**os.environ, "LOIST_BIN": "/nonexistent/loist"})
    assert done.returncode == 0, done.stderr
    assert "+ /nonexistent/loist db upgrade" in done.stderr
    assert "+ /nonexistent/loist import x.jsonl --wipe --source-bucket prod-bucket" in done.stderr
    assert "test-staging-deployment.sh" in done.stderr


def fake_gcloud(tmp_path: Path) -> tuple[Path, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
    gcloud.chmod(0o755)
    return bin_dir, tmp_path / "gcloud.log"


@pytest.mark.parametrize("env_name", ["staging", "production"])
def test_staging_wrapper_finds_url_and_token_with_gcloud(local_stack: RunningStack, tmp_path: Path, env_name: str) -> None:
    bin_dir, log = fake_gcloud(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("SMOKE_BEARER_TOKEN", "SMOKE_AUDIO_URL", "STAGING_URL")}
    env |= {"PATH": f"{bin_dir}:{env['PATH']}", "FAKE_GCLOUD_LOG": str(log), "LOIST_PROJECT": "loist-test",
            "FAKE_SERVICE_URL": local_stack.base_url, "FAKE_SECRET": local_stack.token}
    args = [] if env_name == "staging" else ["--env", "production"]
    done = subprocess.run([str(WRAPPER), "--json", *args], env=env, capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["ok"] is True
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0][:4] == ["run", "services", "describe", f"loist-{env_name}"]
    assert "--project" in calls[0] and "loist-test" in calls[0]
    assert calls[1][:3] == ["secrets", "versions", "access"] and f"--secret=mcp-bearer-token-{env_name}" in calls[1]
    assert local_stack.token not in done.stdout + done.stderr


def test_staging_wrapper_help_and_bad_env(tmp_path: Path) -> None:
    helped = subprocess.run([str(WRAPPER), "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert helped.returncode == 0 and "--audio-url" in helped.stdout and "set -euo" not in helped.stdout
    bad = subprocess.run([str(WRAPPER), "--env", "prod", "http://127.0.0.1:1"], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert bad.returncode == 2 and "staging or production" in bad.stderr


def test_staging_wrapper_fails_when_the_check_fails(local_stack: RunningStack, tmp_path: Path) -> None:
    bin_dir, log = fake_gcloud(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("SMOKE_BEARER_TOKEN", "SMOKE_AUDIO_URL", "STAGING_URL")}
    env |= {"PATH": f"{bin_dir}:{env['PATH']}", "FAKE_GCLOUD_LOG": str(log),
            "FAKE_SERVICE_URL": local_stack.base_url, "FAKE_SECRET": "not-the-staging-token"}
    done = subprocess.run([str(WRAPPER)], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1
    assert "FAIL" in done.stdout


def test_staging_wrapper_gcloud_lines_exist_in_the_cloud_sdk() -> None:
    from tests.deploy.conftest import _gcloud_tree, gcloud_problems

    tree = _gcloud_tree()
    if tree is None:
        pytest.skip("no Google Cloud SDK installed: cannot check gcloud command lines")
    text = WRAPPER.read_text()
    assert "gcloud storage sign-url" in text and "gcloud secrets versions access" in text
    assert gcloud_problems(text, tree) == []


@pytest.mark.parametrize("script", ["local-stack", "refresh-staging", "test-staging-deployment.sh"])
def test_scripts_are_strict_and_pass_shellcheck(script: str) -> None:
    import shutil

    path = ROOT / "scripts" / script
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert os.access(path, os.X_OK)
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed")
    done = subprocess.run([shellcheck, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def _help(*command: str) -> str:
    if command[0] == "loist":  # in-process: the typer app's own --help
        from typer.testing import CliRunner

        from loist.cli import app

        result = CliRunner().invoke(app, [*command[1:], "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.output
    done = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_staging_doc_names_real_commands_options_and_gcloud_lines() -> None:
    import re

    from tests.deploy.conftest import _gcloud_tree, gcloud_problems

    doc = (ROOT / "docs" / "staging.md").read_text()
    commands = {
        "loist smoke": ["loist", "smoke"],
        "loist seed": ["loist", "seed"],
        "loist export": ["loist", "export"],
        "loist import": ["loist", "import"],
        "scripts/local-stack": [str(ROOT / "scripts" / "local-stack")],
        "scripts/refresh-staging": [str(ROOT / "scripts" / "refresh-staging")],
        "scripts/test-staging-deployment.sh": [str(ROOT / "scripts" / "test-staging-deployment.sh")],
    }
    for name, argv in commands.items():
        assert name in doc, name
        helptext = _help(*argv)
        for line in re.findall(rf"{re.escape(name)}[^\n`|]*", doc):
            for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", line):
                assert flag in helptext, f"docs/staging.md: {name} {flag} is not in its --help"
    tree = _gcloud_tree()
    if tree is not None:
        assert gcloud_problems(doc, tree) == []
