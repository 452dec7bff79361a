"""scripts/rollback, scripts/rotate-bearer-token and scripts/validate-autoscaling (its command lines).

They drive the Google control plane through ``gcloud``. Here a fake ``gcloud`` earlier on PATH
stands in for it (mocking the cloud API, which cannot run here): it records every invocation and
answers with canned JSON shaped like the real responses. The command lines themselves are checked
against the installed Cloud SDK's command tree, so a wrong flag still fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from loist_infra.envspec import EnvSpec

from tests.deploy.conftest import ROOT, gcloud_problems

SCRIPTS = ["rollback", "rotate-bearer-token", "validate-autoscaling"]

FAKE_GCLOUD = r'''#!{python}
"""Fake gcloud: records argv (and stdin for --data-file=-), answers from canned responses."""
import json, os, sys
args = sys.argv[1:]
record = {{"args": args}}
if "--data-file=-" in args:
    record["stdin"] = sys.stdin.read()
with open(os.environ["FAKE_GCLOUD_LOG"], "a") as log:
    log.write(json.dumps(record) + "\n")
canned = json.load(open(os.environ["FAKE_GCLOUD_CANNED"]))
key = " ".join(a for a in args if not a.startswith("-"))
for prefix, answer in canned.items():
    if key.startswith(prefix):
        if isinstance(answer, dict) and "exit" in answer:
            sys.stderr.write(answer.get("stderr", "")); sys.exit(answer["exit"])
        sys.stdout.write(answer if isinstance(answer, str) else json.dumps(answer))
        break
'''


def revision(name: str, created: str, ready: bool = True) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


class FakeCloud:
    def __init__(self, tmp_path: Path) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        gcloud = self.bin / "gcloud"
        gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable))
        gcloud.chmod(0o755)
        self.log = tmp_path / "gcloud.log"
        self.canned_path = tmp_path / "canned.json"
        self.canned: dict[str, Any] = {}

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        self.canned_path.write_text(json.dumps(self.canned))
        full_env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "HOME": str(self.bin.parent),
            "FAKE_GCLOUD_LOG": str(self.log),
            "FAKE_GCLOUD_CANNED": str(self.canned_path),
            **env,
        }
        return subprocess.run(
            [str(ROOT / "scripts" / script), *args], env=full_env, capture_output=True, text=True, timeout=60
        )

    def calls(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def mutating(self) -> list[list[str]]:
        reads = {"describe", "list"}
        return [c["args"] for c in self.calls() if not reads & set(c["args"][:4])]


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    return FakeCloud(tmp_path)


def spec(env: str) -> EnvSpec:
    return EnvSpec(environment=env, project="proj", region="us-central1")  # type: ignore[arg-type]


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_are_valid_bash(script: str) -> None:
    path = ROOT / "scripts" / script
    assert os.access(path, os.X_OK)
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "\nset -euo pipefail\n" in text
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    shellcheck = shutil.which("shellcheck")
    if shellcheck:  # installed here (apt shellcheck); optional elsewhere
        done = subprocess.run([shellcheck, str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_gcloud_lines_exist(script: str, gcloud_tree: dict[str, Any]) -> None:
    assert gcloud_problems((ROOT / "scripts" / script).read_text(), gcloud_tree) == []


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripts_refuse_an_unknown_environment(script: str, cloud: FakeCloud) -> None:
    for args in ((), ("prod",), ("staging", "--bogus")):
        done = cloud.run(script, *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert cloud.calls() == []


# --- rollback ------------------------------------------------------------------------------------


def _history(cloud: FakeCloud, env: str, serving: str) -> None:
    cloud.canned = {
        f"run services describe {spec(env).service_name}": {
            "status": {"traffic": [{"revisionName": serving, "percent": 100, "tag": "sha-ccc"}]}
        },
        "run revisions list": [
            revision(f"{spec(env).service_name}-00004-new", "2025-01-04T00:00:00Z"),
            revision(f"{spec(env).service_name}-00003-cur", "2025-01-03T00:00:00Z"),
            revision(f"{spec(env).service_name}-00002-bad", "2025-01-02T00:00:00Z", ready=False),
            revision(f"{spec(env).service_name}-00001-old", "2025-01-01T00:00:00Z"),
        ],
    }


@pytest.mark.parametrize("env", ["staging", "production"])
def test_rollback_moves_traffic_to_the_previous_ready_revision(env: str, cloud: FakeCloud) -> None:
    service = spec(env).service_name
    _history(cloud, env, serving=f"{service}-00003-cur")
    done = cloud.run("rollback", env, LOIST_PROJECT="proj")
    assert done.returncode == 0, done.stderr
    # 00002 is not Ready and 00004 is newer than what serves now: 00001 is the previous good one.
    assert cloud.mutating() == [
        [
            "run",
            "services",
            "update-traffic",
            service,
            "--region",
            "us-central1",
            "--project",
            "proj",
            "--to-revisions",
            f"{service}-00001-old=100",
        ]
    ]


def test_rollback_dry_run_only_reads(cloud: FakeCloud) -> None:
    _history(cloud, "staging", serving="loist-staging-00003-cur")
    done = cloud.run("rollback", "staging", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert cloud.mutating() == []
    assert (
        "would run: gcloud run services update-traffic loist-staging --region us-central1 --to-revisions loist-staging-00001-old=100"
        in done.stdout
    )


def test_rollback_with_no_older_revision_fails(cloud: FakeCloud) -> None:
    _history(cloud, "staging", serving="loist-staging-00001-old")
    done = cloud.run("rollback", "staging")
    assert done.returncode != 0 and "no ready revision older" in done.stderr
    assert cloud.mutating() == []


def test_rollback_fails_when_gcloud_fails(cloud: FakeCloud) -> None:
    cloud.canned = {
        "run services describe": {"exit": 1, "stderr": "ERROR: (gcloud.run.services.describe) denied\n"}
    }
    done = cloud.run("rollback", "production")
    assert done.returncode != 0
    assert cloud.mutating() == []


def test_rollback_to_an_explicit_revision(cloud: FakeCloud) -> None:
    done = cloud.run("rollback", "production", "--to", "loist-production-00007-abc")
    assert done.returncode == 0, done.stderr
    assert cloud.calls()[-1]["args"][-2:] == ["--to-revisions", "loist-production-00007-abc=100"]


# --- rotate-bearer-token -------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["staging", "production"])
def test_rotate_adds_a_version_rolls_the_service_and_disables_old_versions(
    env: str, cloud: FakeCloud
) -> None:
    secret = spec(env).secret("mcp-bearer-token")
    service = spec(env).service_name
    cloud.canned = {
        f"secrets versions add {secret}": f"projects/123/secrets/{secret}/versions/3\n",
        f"secrets versions list {secret}": f"projects/123/secrets/{secret}/versions/3\nprojects/123/secrets/{secret}/versions/1\n",
    }
    done = cloud.run("rotate-bearer-token", env)
    assert done.returncode == 0, done.stderr
    calls = cloud.calls()
    add = calls[0]
    assert add["args"][:4] == ["secrets", "versions", "add", secret] and "--data-file=-" in add["args"]
    token = add["stdin"]
    assert len(token) >= 32 and token.isalnum()
    assert token not in done.stdout + done.stderr, "the token must never be printed"
    commands = [" ".join(c["args"][:3]) + " " + c["args"][3] for c in calls]
    assert commands == [
        f"secrets versions add {secret}",
        f"run services update {service}",
        f"run services update-traffic {service}",
        f"secrets versions list {secret}",
        "secrets versions disable 1",
    ]
    assert "--to-latest" in calls[2]["args"]
    assert calls[4]["args"][4:6] == ["--secret", secret]
    # A second rotation produces a different token.
    cloud.log.unlink()
    assert cloud.run("rotate-bearer-token", env).returncode == 0
    assert cloud.calls()[0]["stdin"] != token


def test_rotate_dry_run_changes_nothing(cloud: FakeCloud) -> None:
    done = cloud.run("rotate-bearer-token", "production", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert cloud.calls() == []
    assert "would run: gcloud secrets versions add mcp-bearer-token-production" in done.stdout
    assert "would run: gcloud run services update-traffic loist-production" in done.stdout


def test_rotate_stops_when_adding_the_version_fails(cloud: FakeCloud) -> None:
    cloud.canned = {"secrets versions add": {"exit": 1, "stderr": "ERROR: permission denied\n"}}
    done = cloud.run("rotate-bearer-token", "staging")
    assert done.returncode != 0
    assert [c["args"][:3] for c in cloud.calls()] == [["secrets", "versions", "add"]], "nothing rolled"


def test_rotate_keep_old_disables_nothing(cloud: FakeCloud) -> None:
    cloud.canned = {"secrets versions add": "projects/1/secrets/mcp-bearer-token-staging/versions/2\n"}
    done = cloud.run("rotate-bearer-token", "staging", "--keep-old")
    assert done.returncode == 0, done.stderr
    assert not [c for c in cloud.calls() if "disable" in c["args"] or "list" in c["args"]]
