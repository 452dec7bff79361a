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
from loist_infra.storage import TEMP_PREFIX

from tests.deploy.conftest import ROOT, Stack, gcloud_problems, settings_env_names

FILES = {"staging": "cloudbuild-staging.yaml", "production": "cloudbuild.yaml"}
ORDER = [
    "install",
    "lint",
    "hadolint",
    "bandit",
    "audit",
    "secret-scan",
    "semgrep",
    "sbom",
    "test",
    "build",
    "scan-image",
    "push",
    "sbom-attach",
    "migrate",
    "deploy",
    "smoke-audio",
    "smoke",
    "promote",
]
GATES = {"lint", "hadolint", "bandit", "audit", "secret-scan", "semgrep", "sbom", "test"}
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
    chain = ["build", "scan-image", "push", "sbom-attach", "migrate", "deploy", "smoke-audio", "smoke", "promote"]
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
            if re.search(r"\b(pytest|ruff|bandit|hadolint|gcloud|loist|docker (build|push)|scripts/scan|image_gate)\b", line):
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
    smoke = " ".join(all_steps["smoke"]["script"].replace("\\\n", " ").split())
    assert re.search(
        r'loist smoke --base-url "\$\(cat /workspace/candidate_url\)" '
        r'--audio-url "\$\(cat /workspace/smoke_audio_url\)"',
        smoke,
    ), "a cloud deployment cannot fetch audio from the build machine: loist smoke needs --audio-url"
    promote = all_steps["promote"]["script"]
    assert f'--to-tags "{CANDIDATE_TAG_PREFIX}${{SHORT_SHA}}=100"' in promote
    build = all_steps["build"]["script"]
    assert "--cache-from" in build
    test = all_steps["test"]["script"]
    assert re.search(r"^\s*/workspace/\.venv/bin/pytest\b", test, re.M)


def _smoke_cli_envvars() -> dict[str, str]:
    """``--token``/``--audio-url`` of ``loist smoke`` -> the environment variable each also reads."""
    import typer.main

    from loist.cli import app

    command = typer.main.get_command(app).commands["smoke"]  # type: ignore[attr-defined]
    return {opt: param.envvar for param in command.params for opt in param.opts if param.envvar}


def test_the_token_is_never_on_a_command_line(env: str) -> None:
    """The process list shows every argument; the token reaches ``loist smoke`` via its env var."""
    token_env = _smoke_cli_envvars()["--token"]
    for step_id, step in steps(env).items():
        script = step["script"]
        assert "--token" not in script, f"{step_id} passes the token as an argument"
        for line in script.splitlines():
            if re.search(r"\$\{?BEARER_TOKEN\b", line) and not line.lstrip().startswith("#"):
                assert re.fullmatch(rf'\s*export {token_env}="\$\{{BEARER_TOKEN\}}"', line), (
                    f"{step_id}: the secret may only be handed to {token_env}: {line.strip()}"
                )
    smoke = steps(env)["smoke"]["script"]
    assert smoke.index(f"export {token_env}=") < smoke.index("loist smoke")


def test_smoke_audio_is_a_fresh_wav_in_tmp_signed_as_the_runtime_account(env: str) -> None:
    """The check's audio: made in the step, uploaded to the environment's bucket under tmp/ (the
    lifecycle rule deletes it), signed for 15 minutes by the account that can read the bucket."""
    config = load(env)
    step = steps(env)["smoke-audio"]
    assert step["name"].startswith("gcr.io/google.com/cloudsdktool/cloud-sdk")
    assert not step.get("secretEnv")
    # Expand the names as Cloud Build would, and compare them with envspec's.
    values = {**config["substitutions"], "PROJECT_ID": spec(env).project, "SHORT_SHA": "abc1234", "BUILD_ID": "b-1"}
    script = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m.group(1), m.group(0)), step["script"])
    script = " ".join(script.replace("\\\n", " ").split())
    expected = spec(env)
    assert f'bucket="{expected.bucket_name}"' in script
    assert f'signer="{expected.runtime_account_email}"' in script
    assert f'object="gs://${{bucket}}/{TEMP_PREFIX}' in script
    assert "import os, sys, wave" in script and "ffmpeg" not in script
    upload = re.search(r'gcloud storage cp "\$\{wav\}" "\$\{object\}" (.*?)--quiet', script)
    assert upload and '--impersonate-service-account="${signer}"' in upload.group(1)
    sign = re.search(r'gcloud storage sign-url "\$\{object\}" (.*?) > /workspace/smoke_audio_url', script)
    assert sign, "the signed URL is written to /workspace/smoke_audio_url"
    flags = sign.group(1)
    assert "--duration=15m" in flags
    assert '--impersonate-service-account="${signer}"' in flags
    assert f'--region="{expected.region}"' in flags, "no region: sign-url reads bucket metadata it may not"


def test_smoke_audio_makes_a_valid_wav(env: str, tmp_path: Path) -> None:
    """Run the step's embedded Python (the part that needs no cloud) and read its output back."""
    import wave

    script = steps(env)["smoke-audio"]["script"]
    match = re.search(r"<<'PY'\n(.*?)\nPY\n", script, re.S)
    assert match
    out = tmp_path / "check.wav"
    done = subprocess.run(["python3", "-", str(out)], input=match.group(1), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with wave.open(str(out)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 8000
    second = tmp_path / "again.wav"
    subprocess.run(["python3", "-", str(second)], input=match.group(1), text=True, check=True)
    assert out.read_bytes() != second.read_bytes(), "each build's audio is new (a new track to delete)"


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
