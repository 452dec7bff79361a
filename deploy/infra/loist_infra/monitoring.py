"""Monitoring for one environment: uptime checks, alert policies, dashboards.

Empty on purpose: the monitoring issue fills this in. Everything it needs is passed in (the
service, whose ``uri`` the uptime check must target, and the names from the spec), so the checks
point at the real service and paths (envspec.LIVE_PATH / READY_PATH), not at guessed names.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from loist_infra.envspec import EnvSpec


def build_monitoring(
    spec: EnvSpec, service: gcp.cloudrunv2.Service | None, opts: pulumi.ResourceOptions
) -> list[pulumi.CustomResource]:
    """Return the monitoring resources created for this environment (none yet)."""
    return []
