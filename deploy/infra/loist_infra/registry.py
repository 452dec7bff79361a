"""Artifact Registry: one Docker repository per environment (images are promoted by rebuilding
from the branch, so production never runs an image a staging build pushed)."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from loist_infra.envspec import EnvSpec


def build_repository(spec: EnvSpec, opts: pulumi.ResourceOptions) -> gcp.artifactregistry.Repository:
    return gcp.artifactregistry.Repository(
        spec.repository_id,
        repository_id=spec.repository_id,
        location=spec.region,
        format="DOCKER",
        description=f"Loist images for {spec.environment}",
        cleanup_policies=[
            gcp.artifactregistry.RepositoryCleanupPolicyArgs(
                id="keep-recent",
                action="KEEP",
                most_recent_versions=gcp.artifactregistry.RepositoryCleanupPolicyMostRecentVersionsArgs(
                    keep_count=30
                ),
            ),
        ],
        labels={"app": "loist", "environment": spec.environment},
        opts=opts,
    )
