"""The deployment docs name the real things: secrets, stacks, scripts, and valid gcloud lines."""

from __future__ import annotations

from typing import Any

from loist_infra.envspec import ENVIRONMENTS, EnvSpec

from tests.deploy.conftest import ROOT, gcloud_problems

DOCS = ["docs/deployment.md", "docs/environments.md"]


def test_gcloud_lines_in_the_docs_exist(gcloud_tree: dict[str, Any]) -> None:
    for doc in DOCS:
        assert gcloud_problems((ROOT / doc).read_text(), gcloud_tree) == [], doc


def test_docs_name_every_secret_and_resource() -> None:
    text = "\n".join((ROOT / doc).read_text() for doc in DOCS)
    for env in ENVIRONMENTS:
        spec = EnvSpec(environment=env, project="p", region="us-central1")
        for name in [*spec.secret_names.values(), spec.service_name, spec.job_name, spec.cloudbuild_file]:
            assert name in text, name
    for path in ["scripts/rollback", "scripts/rotate-bearer-token", "compose.staging.yaml", "deploy/infra"]:
        assert path in text and (ROOT / path).exists(), path
