"""The database connection budget of each stack, read from the Pulumi program under Pulumi's mocks
(no cloud): every process of every instance at its pool's limit, plus the migration job, must stay
under the instance's declared ``max_connections`` minus a reserve (docs/capacity.md)."""

from __future__ import annotations

from typing import Any

import pytest
from loist_infra.envspec import ENVIRONMENTS, SIZING, connection_budget, sizing_budget

from tests.deploy.conftest import Stack, settings_from

pytestmark = pytest.mark.usefixtures("clean_settings_env")


@pytest.fixture(params=ENVIRONMENTS)
def stack(request: pytest.FixtureRequest, pulumi_stacks: dict[str, Stack]) -> Stack:
    return pulumi_stacks[request.param]


def declared_max_connections(stack: Stack) -> int:
    instance = stack.one("sql/databaseInstance:DatabaseInstance")
    flags = {f["name"]: f["value"] for f in instance["inputs"]["settings"].get("databaseFlags", [])}
    assert "max_connections" in flags, "max_connections must be declared on the instance, not left to the tier"
    return int(flags["max_connections"])


def pool_of(stack: Stack, resource: dict[str, Any]) -> tuple[int, int, int]:
    """(workers, pool size, max overflow) the container's settings give each of its processes."""
    settings = settings_from(stack.runtime_env(resource))
    plain, _ = stack.container_env(resource)
    assert "DB_POOL_SIZE" in plain and "DB_MAX_OVERFLOW" in plain, f"{resource['name']}: pool not passed"
    overflow = settings.db_max_overflow if settings.db_max_overflow is not None else settings.db_pool_size
    return settings.web_workers, settings.db_pool_size, overflow


def test_the_connection_budget_fits_the_declared_max_connections(stack: Stack) -> None:
    service = stack.one("cloudrunv2/service:Service")
    job = stack.one("cloudrunv2/job:Job")
    max_instances = int(service["inputs"]["template"]["scaling"]["maxInstanceCount"])
    workers, pool, overflow = pool_of(stack, service)
    job_workers, job_pool, job_overflow = pool_of(stack, job)
    job_tasks = int(job["inputs"]["template"].get("parallelism", 1))
    sizing = SIZING[stack.config["loist:environment"]]  # type: ignore[index]
    budget = connection_budget(
        max_instances=max_instances, web_workers=workers, pool_size=pool, max_overflow=overflow,
        job_tasks=job_tasks, max_connections=declared_max_connections(stack),
        reserved=sizing.sql_reserved_connections,
    )
    # The job runs `loist db upgrade`: one process, whatever WEB_WORKERS says.
    assert budget.job == job_tasks * (job_pool + job_overflow)
    assert budget.fits, budget.explain()
    assert budget == sizing_budget(sizing)  # the program deploys what the sizing table says


def test_each_instance_admits_what_cloud_run_sends_it(stack: Stack) -> None:
    service = stack.one("cloudrunv2/service:Service")
    settings = settings_from(stack.runtime_env(service))
    concurrency = int(service["inputs"]["template"]["maxInstanceRequestConcurrency"])
    # Cloud Run's per-instance concurrency must not exceed what the processes admit together, or
    # requests Cloud Run could have sent to a new instance are refused with 503 instead.
    assert concurrency <= settings.max_concurrent_requests * settings.web_workers
    # One process per vCPU.
    cpu = float(service["inputs"]["template"]["containers"][0]["resources"]["limits"]["cpu"])
    assert settings.web_workers == int(cpu)


def test_a_budget_that_does_not_fit_is_caught() -> None:
    too_many = connection_budget(max_instances=100, web_workers=2, pool_size=5, max_overflow=5, job_tasks=1,
                                 max_connections=400, reserved=20)
    assert not too_many.fits
    assert "2010 connections" in too_many.explain()
