"""The runtime service account, with least privilege, one per environment.

- objectAdmin on its own bucket only (not a project-wide storage role);
- Cloud SQL client, conditioned on its own instance (so staging cannot reach production);
- secretAccessor on each of its own four secrets only;
- token creator on itself: on Cloud Run there is no key file, so signed URLs are signed with the
  IAM signBlob API, which needs this role on the signing account.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from loist_infra.envspec import EnvSpec


def build_runtime_account(spec: EnvSpec, opts: pulumi.ResourceOptions) -> gcp.serviceaccount.Account:
    return gcp.serviceaccount.Account(
        spec.runtime_account_id,
        account_id=spec.runtime_account_id,
        display_name=f"Loist {spec.environment} runtime (Cloud Run service and migration job)",
        opts=opts,
    )


def grant_runtime_access(
    spec: EnvSpec,
    account: gcp.serviceaccount.Account,
    *,
    bucket: gcp.storage.Bucket,
    instance: gcp.sql.DatabaseInstance,
    secrets: dict[str, gcp.secretmanager.Secret],
    opts: pulumi.ResourceOptions,
) -> list[pulumi.CustomResource]:
    member = account.email.apply(lambda email: f"serviceAccount:{email}")
    grants: list[pulumi.CustomResource] = [
        gcp.storage.BucketIAMMember(
            f"{spec.runtime_account_id}-bucket-object-admin",
            bucket=bucket.name,
            role="roles/storage.objectAdmin",
            member=member,
            opts=opts,
        ),
        gcp.projects.IAMMember(
            f"{spec.runtime_account_id}-cloudsql-client",
            project=spec.project,
            role="roles/cloudsql.client",
            member=member,
            condition=gcp.projects.IAMMemberConditionArgs(
                title=f"only {spec.sql_instance_name}",
                expression=instance.name.apply(
                    lambda name: (
                        f'resource.name == "projects/{spec.project}/instances/{name}" '
                        '&& resource.service == "sqladmin.googleapis.com"'
                    )
                ),
            ),
            opts=opts,
        ),
        gcp.serviceaccount.IAMMember(
            f"{spec.runtime_account_id}-token-creator-self",
            service_account_id=account.name,
            role="roles/iam.serviceAccountTokenCreator",
            member=member,
            opts=opts,
        ),
    ]
    for key, secret in secrets.items():
        grants.append(
            gcp.secretmanager.SecretIamMember(
                f"{spec.runtime_account_id}-{key}-accessor",
                secret_id=secret.id,
                role="roles/secretmanager.secretAccessor",
                member=member,
                opts=opts,
            )
        )
    return grants
