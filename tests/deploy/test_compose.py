"""compose.yaml (local stack) and compose.staging.yaml: validated by Debian's docker-compose
(``config -q``; no Docker engine runs here), then parsed for the properties that matter.
The compose health checks are run for real against the same emulator the suite uses."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from loist_infra.envspec import MIGRATE_COMMAND, EnvSpec

from tests.deploy.conftest import ROOT, settings_env_names, settings_from

#: Variables the services set that are read by libraries, not by Loist's Settings.
LIBRARY_ENV = {"STORAGE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"}
STAGING_SECRETS = {
    "DB_CONNECTION_NAME": "proj:us-central1:loist-staging-pg",
    "DB_PASSWORD": "not-a-real-password",
    "GCS_BUCKET_NAME": "proj-loist-staging",
    "GCS_PROJECT_ID": "proj",
    "BEARER_TOKEN": "t" * 48,
}


def compose(file: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose (Debian package) is needed to validate the compose files"
    clean = {k: v for k, v in os.environ.items() if k not in STAGING_SECRETS}
    return subprocess.run(
        [binary, "-f", file, "config", "-q"],
        cwd=ROOT,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def load(file: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / file).read_text())


def loist_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): str(v) for k, v in env.items()}


def test_local_compose_is_valid() -> None:
    done = compose("compose.yaml")
    assert done.returncode == 0, done.stderr


def test_staging_compose_is_valid_and_requires_its_secrets() -> None:
    done = compose("compose.staging.yaml", STAGING_SECRETS)
    assert done.returncode == 0, done.stderr
    missing = compose(
        "compose.staging.yaml", {k: v for k, v in STAGING_SECRETS.items() if k != "DB_PASSWORD"}
    )
    assert missing.returncode != 0 and "DB_PASSWORD" in missing.stderr


def test_local_stack_shape() -> None:
    data = load("compose.yaml")
    services = data["services"]
    assert {"loist", "postgres", "gcs", "migrate"} <= set(services)
    # The app starts only after the one-shot migration finished successfully.
    assert services["loist"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["command"] == list(MIGRATE_COMMAND)
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert services["migrate"].get("restart") == "no"
    for name in ("loist", "postgres", "gcs"):
        assert services[name]["healthcheck"]["test"], name
    # One named network for everyone; named volumes for the data.
    assert list(data["networks"]) == ["loist"]
    assert all(s["networks"] == ["loist"] for s in services.values())
    assert {"pgdata", "gcsdata", "loistdata"} <= set(data["volumes"])
    assert "/health/ready" in " ".join(services["loist"]["healthcheck"]["test"])


@pytest.mark.usefixtures("clean_settings_env")
def test_local_stack_env_is_settings_and_consistent() -> None:
    services = load("compose.yaml")["services"]
    env = loist_env(services["loist"])
    assert env == loist_env(services["migrate"]), "the migration must see the app's database"
    assert set(env) - settings_env_names() <= LIBRARY_ENV, set(env) - settings_env_names()
    settings = settings_from({k: v for k, v in env.items() if k not in LIBRARY_ENV})
    assert settings.problems() == []
    assert settings.database_dialect == "postgresql" and settings.db_host == "postgres"
    postgres = loist_env(services["postgres"])
    assert (settings.db_user, settings.db_name) == (postgres["POSTGRES_USER"], postgres["POSTGRES_DB"])
    assert settings.db_password and settings.db_password.get_secret_value() == postgres["POSTGRES_PASSWORD"]
    assert settings.storage_backend == "gcs"
    assert f"--default-bucket {settings.gcs_bucket_name}" in " ".join(services["gcs"]["command"])
    assert env["STORAGE_EMULATOR_HOST"].endswith(":9023") and "//gcs:" in env["STORAGE_EMULATOR_HOST"]


@pytest.mark.usefixtures("clean_settings_env")
def test_staging_compose_targets_staging_through_the_proxy() -> None:
    data = load("compose.staging.yaml")
    services = data["services"]
    proxy, app = services["cloud-sql-proxy"], services["loist"]
    assert "cloud-sql-proxy" in proxy["image"]
    assert app["depends_on"]["cloud-sql-proxy"] == {"condition": "service_healthy"}
    assert proxy["healthcheck"]["test"] and app["healthcheck"]["test"]
    # Application-default credentials, read-only, for both containers.
    for service in (proxy, app):
        (mount,) = [v for v in service["volumes"] if isinstance(v, dict)]
        assert mount["read_only"] is True and "gcloud" in mount["source"]
    env = loist_env(app)
    assert set(env) - settings_env_names() <= LIBRARY_ENV
    resolved = {
        k: STAGING_SECRETS.get(k, v) if v.startswith("${") else v
        for k, v in env.items()
        if k not in LIBRARY_ENV
    }
    settings = settings_from(resolved)
    assert settings.problems() == []
    spec = EnvSpec(environment="staging", project="proj", region="us-central1")
    assert (settings.environment, settings.db_name, settings.db_user) == (
        "staging",
        spec.database_name,
        spec.database_user,
    )
    assert settings.db_host == "cloud-sql-proxy" and settings.auth_enabled
    # Every secret comes from the operator's shell, named after its Secret Manager secret.
    text = (ROOT / "compose.staging.yaml").read_text()
    for var, name in spec.secret_names.items():
        assert f"${{{var}:?" in text and name in text, var


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_gcs_emulator_healthcheck_works_against_the_emulator(tmp_path: Path) -> None:
    """Start gcp-storage-emulator the way the gcs service does; run the service's health check."""
    gcs = load("compose.yaml")["services"]["gcs"]
    port = _free_port()
    script = gcs["command"][-1].split("exec ", 1)[1].replace("9023", str(port)).split()
    emulator = Path(sys.executable).parent / script[0]
    process = subprocess.Popen([str(emulator), *script[1:], "--in-memory", "-q"], cwd=tmp_path)
    try:
        check = [sys.executable, *gcs["healthcheck"]["test"][2:]]
        check[-1] = check[-1].replace("9023", str(port))
        for _ in range(200):  # the emulator binds within a second; poll the check itself
            if subprocess.run(check, capture_output=True, timeout=10).returncode == 0:
                break
            if process.poll() is not None:
                pytest.fail("the emulator exited")
        else:
            pytest.fail("health check never passed")
        wrong = [c.replace("loist-local", "no-such-bucket") for c in check]
        assert subprocess.run(wrong, capture_output=True, timeout=10).returncode != 0
    finally:
        process.terminate()
        process.wait(timeout=10)
