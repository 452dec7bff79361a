"""Artifact Registry: one Docker repository per environment (images are promoted by rebuilding
from the branch, so production never runs an image a staging build pushed), with vulnerability
scanning on: the Container Scanning API scans every pushed image and keeps re-checking it as new
vulnerabilities are published; the pipelines' ``scan-image`` step gates each build with the
On-Demand Scanning API before the push (docs/security.md)."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from loist_infra.envspec import EnvSpec

SCANNING_APIS = ("containerscanning.googleapis.com", "ondemandscanning.googleapis.com")


def build_repository(spec: EnvSpec, opts: pulumi.ResourceOptions) -> gcp.artifactregistry.Repository:
    apis = [
        gcp.projects.Service(
            f"{spec.repository_id}-{api.split('.')[0]}",
            project=spec.project,
            service=api,
            disable_on_destroy=False,
            opts=opts,
        )
        for api in SCANNING_APIS
    ]
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
        vulnerability_scanning_config=gcp.artifactregistry.RepositoryVulnerabilityScanningConfigArgs(
            enablement_config="INHERITED",  # scanned whenever the project's Container Scanning API is on
        ),
        labels={"app": "loist", "environment": spec.environment},
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=apis)),
    )
