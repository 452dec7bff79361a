"""Secret Manager: the four secrets Cloud Run turns into env vars. Values are generated or
derived from other resources here, never typed by a person and never in the repo (Pulumi keeps
them encrypted in the stack state)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from loist_infra.envspec import SECRET_ENV, EnvSpec

#: Long enough for the production profile (>= 32) with room to spare; alphanumeric so it survives
#: shells and headers unquoted.
BEARER_TOKEN_LENGTH = 48


@dataclass
class Secrets:
    secrets: dict[str, gcp.secretmanager.Secret]  # by key ("db-password", ...)
    versions: dict[str, gcp.secretmanager.SecretVersion]

    def by_env(self) -> dict[str, gcp.secretmanager.Secret]:
        """Env var name -> secret."""
        return {env: self.secrets[key] for env, key in SECRET_ENV.items()}


def build_secrets(
    spec: EnvSpec,
    *,
    connection_name: pulumi.Input[str],
    db_password: pulumi.Input[str],
    bucket_name: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> Secrets:
    token = random.RandomPassword(
        f"{spec.secret('mcp-bearer-token')}-value", length=BEARER_TOKEN_LENGTH, special=False, opts=opts
    )
    values: dict[str, pulumi.Input[str]] = {
        "db-connection-name": connection_name,
        "db-password": db_password,
        "gcs-bucket-name": bucket_name,
        "mcp-bearer-token": token.result,
    }
    secrets: dict[str, gcp.secretmanager.Secret] = {}
    versions: dict[str, gcp.secretmanager.SecretVersion] = {}
    for key, value in values.items():
        name = spec.secret(key)
        secret = gcp.secretmanager.Secret(
            name,
            secret_id=name,
            replication=gcp.secretmanager.SecretReplicationArgs(
                auto=gcp.secretmanager.SecretReplicationAutoArgs()
            ),
            labels={"app": "loist", "environment": spec.environment},
            opts=opts,
        )
        # The bearer token is rotated by scripts/rotate-bearer-token (new versions, old ones
        # disabled): Pulumi must not fight that, so it ignores the first version's later state.
        ignore = ["enabled", "secret_data"] if key == "mcp-bearer-token" else []
        versions[key] = gcp.secretmanager.SecretVersion(
            f"{name}-v1",
            secret=secret.id,
            secret_data=pulumi.Output.secret(value),
            opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=ignore)),
        )
        secrets[key] = secret
    return Secrets(secrets=secrets, versions=versions)
