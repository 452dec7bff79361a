"""Where background jobs run on Cloud Run, under Pulumi's mocks (the Google Cloud control plane is
mocked: nothing is created; the tests read what would be sent to the provider)."""

from __future__ import annotations

import pytest
from loist_infra.envspec import ENVIRONMENTS

from tests.deploy.conftest import Stack

pytestmark = pytest.mark.usefixtures("clean_settings_env")


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_the_service_keeps_cpu_between_requests_for_its_job_workers(
    environment: str, pulumi_stacks: dict[str, Stack]
) -> None:
    stack = pulumi_stacks[environment]
    container = stack.app_container(stack.one("cloudrunv2/service:Service"))
    # Job workers run inside `loist serve`: CPU must stay allocated after a response is sent.
    assert container["resources"]["cpuIdle"] is False
    envs = {env["name"]: env.get("value") for env in container.get("envs", [])}
    assert envs.get("JOBS_WORKERS", "1") != "0"  # the service runs them (default: one worker)
