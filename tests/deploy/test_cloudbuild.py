"""cloudbuild.yaml (production) and cloudbuild-staging.yaml (staging): step order, every step
can fail, and every name, env var and secret agrees with envspec, the Pulumi program and the
Settings model."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from loist_infra.envspec import CANDIDATE_TAG_PREFIX, ENVIRONMENTS, SECRET_ENV, EnvSpec

from tests.deploy.conftest import ROOT, Stack, gcloud_problems, settings_env_names

FILES = {"staging": "cloudbuild-staging.yaml", "production": "cloudbuild.yaml"}
ORDER = [
    "install",
    "lint",
    "hadolint",
    "bandit",
    "test",
    "build",
    "push",
    "migrate",
    "deploy",
    "smoke",
    "promote",
]
GATES = {"lint", "hadolint", "bandit", "test"}
#: Cloud Build's built-in substitutions (exposed to scripts by automapSubstitutions).
BUILTINS = {
    "PROJECT_ID",
    "PROJECT_NUMBER",
    "BUILD_ID",
    "LOCATION",
    "COMMIT_SHA",
    "SHORT_SHA",
    "BRANCH_NAME",
    "TAG_NAME",
    "REPO_NAME",
    "REVISION_ID",
    "TRIGGER_NAME",
}


@pytest.fixture(params=ENVIRONMENTS)
def env(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def load(env: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / FILES[env]).read_text())


def spec(env: str) -> EnvSpec:
    config = yaml.safe_load((ROOT / "deploy" / "infra" / f"Pulumi.{env}.yaml").read_text())["config"]
    return EnvSpec(environment=env, project=config["gcp:project"], region=config["gcp:region"])  # type: ignore[arg-type]


def steps(env: str) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in load(env)["steps"]}


def ancestors(all_steps: dict[str, dict[str, Any]], step_id: str) -> set[str]:
    seen: set[str] = set()
    stack = list(all_steps[step_id].get("waitFor", []))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(all_steps[current].get("waitFor", []))
    return seen


def test_steps_in_order_and_gated(env: str) -> None:
    all_steps = steps(env)
    assert list(all_steps) == ORDER
    for step_id in ORDER[1:]:
        assert all_steps[step_id].get("waitFor"), f"{step_id}: explicit waitFor (never '-', never implicit)"
        assert "-" not in all_steps[step_id]["waitFor"]
    # Nothing is built before every gate passed; each later stage waits for the one before.
    assert GATES <= ancestors(all_steps, "build")
    chain = ["build", "push", "migrate", "deploy", "smoke", "promote"]
    for earlier, later in zip(chain, chain[1:], strict=False):
        assert earlier in ancestors(all_steps, later), f"{later} must wait for {earlier}"
    assert set(ORDER[:-1]) <= ancestors(all_steps, "promote")


def test_every_step_is_a_failing_bash_script(env: str) -> None:
    config = load(env)
    assert config["options"]["automapSubstitutions"] is True
    for step in config["steps"]:
        assert "args" not in step and "entrypoint" not in step, step["id"]
        lines = [ln for ln in step["script"].splitlines() if ln.strip() and not ln.strip().startswith("# ")]
        assert lines[0] == "#!/usr/bin/env bash", step["id"]
        assert lines[1] == "set -euo pipefail", step["id"]
        checked = subprocess.run(["bash", "-n"], input=step["script"], capture_output=True, text=True)
        assert checked.returncode == 0, f"{step['id']}: {checked.stderr}"
        for line in lines:
            if re.search(r"\b(pytest|ruff|bandit|hadolint|gcloud|loist|docker (build|push))\b", line):
                assert not re.search(r"\|\|\s*(true|:)", line), f"{step['id']} swallows a failure: {line}"


def test_scripts_pass_shellcheck(env: str, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if not shellcheck:
        pytest.skip("shellcheck not installed (apt install shellcheck)")
    for step in load(env)["steps"]:
        path = tmp_path / f"{step['id']}.sh"
        path.write_text(step["script"])
        done = subprocess.run([shellcheck, "-s", "bash", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, f"{step['id']}:\n{done.stdout}"


def test_every_variable_is_defined(env: str) -> None:
    """A mistyped ``${_REGOIN}`` would only fail in the cloud; catch it here."""
    config = load(env)
    substitutions = set(config["substitutions"])
    for step in config["steps"]:
        script = step["script"]
        assigned = set(re.findall(r"^\s*([A-Za-z_]\w*)=", script, re.M))
        known = substitutions | BUILTINS | set(step.get("secretEnv", [])) | assigned
        used = set(re.findall(r"\$\{?([A-Za-z_]\w*)", script))
        assert used <= known, f"{step['id']}: undefined {used - known}"


def test_names_match_envspec_and_the_pulumi_program(env: str, pulumi_stacks: dict[str, Stack]) -> None:
    config = load(env)
    expected = spec(env).cloudbuild_substitutions()
    assert config["substitutions"] == expected
    stack = pulumi_stacks[env]
    assert stack.one("cloudrunv2/service:Service")["inputs"]["name"] == expected["_SERVICE"]
    assert stack.one("cloudrunv2/job:Job")["inputs"]["name"] == expected["_JOB"]
    assert (
        stack.one("artifactregistry/repository:Repository")["inputs"]["repositoryId"]
        == expected["_REPOSITORY"]
    )
    assert stack.one("cloudrunv2/service:Service")["inputs"]["location"] == expected["_REGION"]


def test_secrets_match_settings_and_the_pulumi_program(env: str, pulumi_stacks: dict[str, Stack]) -> None:
    config = load(env)
    secret_ids = {s["inputs"]["secretId"] for s in pulumi_stacks[env].of_type("/secret:Secret")}
    used_env: set[str] = set()
    for entry in config["availableSecrets"]["secretManager"]:
        match = re.fullmatch(r"projects/\$PROJECT_ID/secrets/([\w-]+)/versions/latest", entry["versionName"])
        assert match, entry["versionName"]
        assert match.group(1) in secret_ids, f"{match.group(1)} is not created by the Pulumi program"
        assert match.group(1) == spec(env).secret(SECRET_ENV[entry["env"]])
        assert entry["env"] in settings_env_names()
        used_env.add(entry["env"])
    all_steps = steps(env)
    assert set(all_steps["smoke"]["secretEnv"]) == used_env == {"BEARER_TOKEN"}
    for step_id, step in all_steps.items():
        if step_id != "smoke":
            assert not step.get("secretEnv"), f"only the deployment check needs a secret ({step_id})"


def test_env_vars_set_on_deploy_are_settings(env: str) -> None:
    deploy = steps(env)["deploy"]["script"]
    assert "--set-env-vars" not in deploy and "--set-secrets" not in deploy, "Pulumi owns the configuration"
    names = re.findall(r"--update-env-vars\s+\"?([A-Z_]+)=", deploy)
    assert names and set(names) <= settings_env_names()


def test_deploy_without_traffic_check_tagged_url_then_promote(env: str) -> None:
    all_steps = steps(env)
    migrate = all_steps["migrate"]["script"]
    assert "gcloud run jobs execute" in migrate and "--wait" in migrate
    assert re.search(r"gcloud run jobs update \"\$\{_JOB\}\" .*--image", migrate)
    deploy = all_steps["deploy"]["script"]
    assert "--no-traffic" in deploy and '--tag "${tag}"' in deploy
    assert f'tag="{CANDIDATE_TAG_PREFIX}${{SHORT_SHA}}"' in deploy
    assert "/workspace/candidate_url" in deploy
    smoke = all_steps["smoke"]["script"]
    assert re.search(
        r'loist smoke --base-url "\$\(cat /workspace/candidate_url\)" --token "\$\{BEARER_TOKEN\}"', smoke
    )
    promote = all_steps["promote"]["script"]
    assert f'--to-tags "{CANDIDATE_TAG_PREFIX}${{SHORT_SHA}}=100"' in promote
    build = all_steps["build"]["script"]
    assert "--cache-from" in build
    test = all_steps["test"]["script"]
    assert re.search(r"^\s*/workspace/\.venv/bin/pytest\b", test, re.M)


def test_gcloud_command_lines_exist(env: str, gcloud_tree: dict[str, Any]) -> None:
    text = "\n".join(step["script"] for step in load(env)["steps"])
    assert gcloud_problems(text, gcloud_tree) == []


def test_gcloud_check_catches_a_wrong_flag(gcloud_tree: dict[str, Any]) -> None:
    assert gcloud_problems("gcloud run deploy svc --no-trafic", gcloud_tree) == [
        "gcloud run deploy: unknown flag --no-trafic"
    ]
    assert gcloud_problems("gcloud run deplo svc", gcloud_tree)


def test_the_two_pipelines_differ_only_in_names() -> None:
    staging, production = (ROOT / FILES["staging"]).read_text(), (ROOT / FILES["production"]).read_text()
    body = [ln for ln in staging.replace("staging", "production").splitlines() if not ln.startswith("#")]
    assert body == [ln for ln in production.splitlines() if not ln.startswith("#")]
