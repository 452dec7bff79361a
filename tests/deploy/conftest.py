"""Fixtures for the deployment tests: the Pulumi program run under mocks, and Settings helpers.

The Pulumi stacks are built in subprocesses (see pulumi_harness.py), all at once, once per
session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "deploy" / "infra"
if str(INFRA) not in sys.path:
    sys.path.insert(0, str(INFRA))

from loist_infra.envspec import APP_CONTAINER  # noqa: E402

from loist.config import Settings  # noqa: E402

#: Extra stack runs with config overrides, next to the two real stack files.
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "staging": ("staging", {}),
    "production": ("production", {}),
    # Production with an insecure public URL and a GitHub repo: the Settings check must catch the
    # URL, and the program must then create the Cloud Build trigger (and runbook links); alert
    # e-mails and a stricter availability target from the config.
    "production-variant": (
        "production",
        {
            "loist:embedBaseUrl": "http://music.example.org",
            "loist:githubRepo": "example/loist",
            "loist:alertEmails": "ops@example.org, oncall@example.org",
            "loist:alertChannels": "projects/loist-production/notificationChannels/42",
            "loist:sloAvailability": "0.999",
        },
    ),
    # Staging limited to an allow-list of source ranges (12: more than one Cloud Armor rule holds).
    "staging-allowlist": (
        "staging",
        {
            "loist:embedBaseUrl": "https://staging.music.example.org",
            "loist:allowedSourceRanges": ",".join([f"203.0.113.{n}/32" for n in range(11)] + ["198.51.100.0/24"]),
        },
    ),
}


def settings_env_names() -> set[str]:
    """Every environment variable name Settings reads (upper-cased field names and aliases)."""
    from pydantic import AliasChoices

    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.add(str(alias.choices[0]).upper())
        else:
            names.add(name.upper())
    return names


def unwrap(value: Any) -> Any:
    """Pulumi marks secret values as {<secret sig>: ..., "value": v}; return v."""
    if isinstance(value, dict) and "4dabf18193072939515e22adb298388d" in value:
        return value["value"]
    return value


@dataclass
class Stack:
    """What one stack registered: type, name, id and provider inputs of every resource."""

    name: str
    config: dict[str, str]
    resources: list[dict[str, Any]]

    def of_type(self, suffix: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"].endswith(suffix)]

    def one(self, suffix: str) -> dict[str, Any]:
        found = self.of_type(suffix)
        assert len(found) == 1, f"{self.name}: expected one {suffix}, got {[r['name'] for r in found]}"
        return found[0]

    def secret_value(self, secret_id: str) -> str:
        """Follow a secret name to the value of the version the program stores in it."""
        secret = next(r for r in self.of_type("/secret:Secret") if r["inputs"]["secretId"] == secret_id)
        versions = [
            v for v in self.of_type("/secretVersion:SecretVersion") if v["inputs"]["secret"] == secret["id"]
        ]
        assert len(versions) == 1, f"{secret_id}: {len(versions)} versions"
        return str(unwrap(versions[0]["inputs"]["secretData"]))

    def app_container(self, resource: dict[str, Any]) -> dict[str, Any]:
        """A job's only container, or a service's app container (the first: sidecars follow it)."""
        template = resource["inputs"]["template"]
        if "template" in template:  # a job: template.template
            (container,) = template["template"]["containers"]
            return container
        containers = template["containers"]
        assert containers[0]["name"] == APP_CONTAINER and "ports" in containers[0]
        assert not any("ports" in c for c in containers[1:]), "only the app container receives requests"
        return containers[0]

    def container_env(self, resource: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
        """(plain values, secret refs) of a Cloud Run service's app container or a job's container."""
        container = self.app_container(resource)
        plain: dict[str, str] = {}
        refs: dict[str, str] = {}
        for env in container["envs"]:
            if "valueSource" in env:
                refs[env["name"]] = env["valueSource"]["secretKeyRef"]["secret"]
            else:
                plain[env["name"]] = str(env["value"])
        return plain, refs

    def runtime_env(self, resource: dict[str, Any]) -> dict[str, str]:
        """The environment the container would see on Cloud Run (secrets resolved, PORT set)."""
        plain, refs = self.container_env(resource)
        env = dict(plain)
        for name, secret_id in refs.items():
            env[name] = self.secret_value(secret_id)
        template = resource["inputs"]["template"]
        ports = (template.get("containers") or [{}])[0].get("ports") if "containers" in template else None
        env["PORT"] = str(int(ports["containerPort"])) if ports else "8080"
        return env


def _run(variant: str) -> Stack:
    stack, overrides = VARIANTS[variant]
    args = [
        sys.executable,
        "-m",
        "tests.deploy.pulumi_harness",
        stack,
        *(f"{k}={v}" for k, v in overrides.items()),
    ]
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"pulumi program failed for {variant}:\n{done.stderr[-4000:]}"
    data = json.loads(done.stdout)
    return Stack(name=variant, config=data["config"], resources=data["resources"])


@pytest.fixture(scope="session")
def pulumi_stacks() -> dict[str, Stack]:
    with ThreadPoolExecutor(max_workers=len(VARIANTS)) as pool:
        return dict(zip(VARIANTS, pool.map(_run, VARIANTS), strict=True))


@pytest.fixture
def clean_settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No Settings variable from this machine's environment leaks into a Settings under test."""
    for name in settings_env_names() | {"DATA_DIR"}:
        monkeypatch.delenv(name, raising=False)
    yield


def settings_from(env: Mapping[str, str]) -> Settings:
    """Settings exactly as the app builds them from these env vars (no .env file)."""
    assert not ({k.upper() for k in env} & {k.upper() for k in os.environ} & settings_env_names()), (
        "env not clean"
    )
    return Settings(_env_file=None, **dict(env))


# --- gcloud command lines, checked against the installed Cloud SDK's command tree ---------------


def _gcloud_tree() -> dict[str, Any] | None:
    """The SDK's static CLI tree (every command and flag), or None without a Cloud SDK."""
    import importlib.util
    import shutil

    binary = shutil.which("gcloud")
    if not binary:
        return None
    path = Path(os.path.realpath(binary)).parents[1] / "data" / "cli" / "gcloud_completions.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("_gcloud_completions", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STATIC_COMPLETION_CLI_TREE


@pytest.fixture(scope="session")
def gcloud_tree() -> dict[str, Any]:
    tree = _gcloud_tree()
    if tree is None:
        pytest.skip("no Google Cloud SDK installed: cannot check gcloud command lines")
    return tree


def gcloud_invocations(text: str) -> list[str]:
    """Every ``gcloud ...`` command line in a script or document (continuations joined)."""
    import re

    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        for match in re.finditer(r"(?<![\w/-])gcloud\s+([a-z][^`]*)", line):
            found.append(match.group(1))
    return found


def gcloud_problems(text: str, tree: dict[str, Any]) -> list[str]:
    """Unknown commands or flags in the ``gcloud`` command lines of ``text``."""
    import re

    problems = []
    for invocation in gcloud_invocations(text):
        node = tree
        path = []
        for word in invocation.split():
            if word in node["commands"]:
                node = node["commands"][word]
                path.append(word)
            else:
                break
        if not path or node["commands"]:
            problems.append(f"not a gcloud command: gcloud {invocation}")
            continue
        allowed = set(node["flags"]) | set(tree["flags"])
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", invocation):
            if flag not in allowed:
                problems.append(f"gcloud {' '.join(path)}: unknown flag {flag}")
    return problems
