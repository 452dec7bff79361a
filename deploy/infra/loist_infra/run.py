"""Cloud Run: the service (``loist serve``) and the migration job (``loist db upgrade``).

Both run the same image with the same environment, secrets and Cloud SQL socket, as the same
runtime service account, so a migration that works in the job works for the service.
The pipelines roll new images out (``gcloud run deploy --no-traffic --tag``, then
``update-traffic``): Pulumi owns the configuration and ignores image and traffic afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_gcp as gcp

from loist_infra.envspec import (
    APP_CONTAINER,
    CLOUDSQL_MOUNT,
    CONTAINER_PORT,
    LIVE_PATH,
    MIGRATE_COMMAND,
    MIGRATION_JOB_TASKS,
    READY_PATH,
    EnvSpec,
)
from loist_infra.network import Network

CLOUDSQL_VOLUME = "cloudsql"


def service_envs(
    spec: EnvSpec, embed_base_url: pulumi.Input[str], secrets_by_env: dict[str, gcp.secretmanager.Secret]
) -> list[gcp.cloudrunv2.ServiceTemplateContainerEnvArgs]:
    base = pulumi.Output.from_input(embed_base_url)
    envs = [
        gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
            name=name,
            value=base if name == "EMBED_BASE_URL" else value,
        )
        for name, value in spec.plain_env("placeholder").items()
    ]
    for name, secret in secrets_by_env.items():
        envs.append(
            gcp.cloudrunv2.ServiceTemplateContainerEnvArgs(
                name=name,
                value_source=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceArgs(
                    secret_key_ref=gcp.cloudrunv2.ServiceTemplateContainerEnvValueSourceSecretKeyRefArgs(
                        secret=secret.secret_id, version="latest"
                    )
                ),
            )
        )
    return envs


def _job_envs(
    envs: list[gcp.cloudrunv2.ServiceTemplateContainerEnvArgs],
) -> list[gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs]:
    out = []
    for env in envs:
        source = env.value_source
        if source is None:
            out.append(gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs(name=env.name, value=env.value))
        else:
            ref = source.secret_key_ref
            out.append(
                gcp.cloudrunv2.JobTemplateTemplateContainerEnvArgs(
                    name=env.name,
                    value_source=gcp.cloudrunv2.JobTemplateTemplateContainerEnvValueSourceArgs(
                        secret_key_ref=gcp.cloudrunv2.JobTemplateTemplateContainerEnvValueSourceSecretKeyRefArgs(
                            secret=ref.secret, version=ref.version
                        )
                    ),
                )
            )
    return out


def build_service(
    spec: EnvSpec,
    *,
    account: gcp.serviceaccount.Account,
    network: Network,
    connection_name: pulumi.Input[str],
    envs: list[gcp.cloudrunv2.ServiceTemplateContainerEnvArgs],
    opts: pulumi.ResourceOptions,
    sidecars: Sequence[gcp.cloudrunv2.ServiceTemplateContainerArgs] = (),
    sidecar_volumes: Sequence[gcp.cloudrunv2.ServiceTemplateVolumeArgs] = (),
) -> gcp.cloudrunv2.Service:
    """The app container first (``containers[0]``, the one the pipelines deploy images to), then
    ``sidecars`` (the metrics collector, see monitoring.py)."""
    sizing = spec.sizing
    service = gcp.cloudrunv2.Service(
        spec.service_name,
        name=spec.service_name,
        location=spec.region,
        ingress=spec.run_ingress,  # only the load balancer where one is in front (edge.py)
        deletion_protection=sizing.deletion_protection,
        labels={"app": "loist", "environment": spec.environment},
        template=gcp.cloudrunv2.ServiceTemplateArgs(
            service_account=account.email,
            timeout=f"{sizing.request_timeout_s}s",
            max_instance_request_concurrency=sizing.concurrency,
            scaling=gcp.cloudrunv2.ServiceTemplateScalingArgs(
                min_instance_count=sizing.min_instances, max_instance_count=sizing.max_instances
            ),
            vpc_access=gcp.cloudrunv2.ServiceTemplateVpcAccessArgs(
                egress="PRIVATE_RANGES_ONLY",
                network_interfaces=[
                    gcp.cloudrunv2.ServiceTemplateVpcAccessNetworkInterfaceArgs(
                        network=network.vpc.name, subnetwork=network.subnet.name, tags=[spec.run_network_tag]
                    )
                ],
            ),
            volumes=[
                gcp.cloudrunv2.ServiceTemplateVolumeArgs(
                    name=CLOUDSQL_VOLUME,
                    cloud_sql_instance=gcp.cloudrunv2.ServiceTemplateVolumeCloudSqlInstanceArgs(
                        instances=[connection_name]
                    ),
                ),
                *sidecar_volumes,
            ],
            containers=[
                gcp.cloudrunv2.ServiceTemplateContainerArgs(
                    name=APP_CONTAINER,
                    image=spec.effective_image,
                    ports=gcp.cloudrunv2.ServiceTemplateContainerPortsArgs(container_port=CONTAINER_PORT),
                    envs=envs,
                    resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(
                        limits={"cpu": sizing.cpu, "memory": sizing.memory},
                        cpu_idle=True,
                        startup_cpu_boost=True,
                    ),
                    volume_mounts=[
                        gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs(
                            name=CLOUDSQL_VOLUME, mount_path=CLOUDSQL_MOUNT
                        )
                    ],
                    startup_probe=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeArgs(
                        http_get=gcp.cloudrunv2.ServiceTemplateContainerStartupProbeHttpGetArgs(
                            path=READY_PATH, port=CONTAINER_PORT
                        ),
                        initial_delay_seconds=0,
                        period_seconds=3,
                        timeout_seconds=3,
                        failure_threshold=20,
                    ),
                    liveness_probe=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeArgs(
                        http_get=gcp.cloudrunv2.ServiceTemplateContainerLivenessProbeHttpGetArgs(
                            path=LIVE_PATH, port=CONTAINER_PORT
                        ),
                        period_seconds=30,
                        timeout_seconds=5,
                        failure_threshold=3,
                    ),
                ),
                *sidecars,
            ],
        ),
        opts=pulumi.ResourceOptions.merge(
            opts,
            # The pipelines deploy images and move traffic; Pulumi must not roll them back.
            pulumi.ResourceOptions(
                ignore_changes=[
                    "template.containers[0].image",
                    "traffics",
                    "client",
                    "clientVersion",
                    "template.revision",
                ]
            ),
        ),
    )
    # Public: embed pages, oEmbed, streams and health are meant to be reached by anyone; /mcp is
    # protected by the app's bearer token (AUTH_ENABLED=true), not by Cloud Run IAM.
    gcp.cloudrunv2.ServiceIamMember(
        f"{spec.service_name}-public",
        name=service.name,
        location=spec.region,
        role="roles/run.invoker",
        member="allUsers",
        opts=opts,
    )
    return service


def build_migration_job(
    spec: EnvSpec,
    *,
    account: gcp.serviceaccount.Account,
    network: Network,
    connection_name: pulumi.Input[str],
    envs: list[gcp.cloudrunv2.ServiceTemplateContainerEnvArgs],
    opts: pulumi.ResourceOptions,
) -> gcp.cloudrunv2.Job:
    return gcp.cloudrunv2.Job(
        spec.job_name,
        name=spec.job_name,
        location=spec.region,
        deletion_protection=spec.sizing.deletion_protection,
        labels={"app": "loist", "environment": spec.environment},
        template=gcp.cloudrunv2.JobTemplateArgs(
            task_count=MIGRATION_JOB_TASKS,
            parallelism=MIGRATION_JOB_TASKS,  # counted in the connection budget
            template=gcp.cloudrunv2.JobTemplateTemplateArgs(
                service_account=account.email,
                timeout="900s",
                max_retries=1,  # migrations are idempotent and take an advisory lock
                vpc_access=gcp.cloudrunv2.JobTemplateTemplateVpcAccessArgs(
                    egress="PRIVATE_RANGES_ONLY",
                    network_interfaces=[
                        gcp.cloudrunv2.JobTemplateTemplateVpcAccessNetworkInterfaceArgs(
                            network=network.vpc.name, subnetwork=network.subnet.name, tags=[spec.run_network_tag]
                        )
                    ],
                ),
                volumes=[
                    gcp.cloudrunv2.JobTemplateTemplateVolumeArgs(
                        name=CLOUDSQL_VOLUME,
                        cloud_sql_instance=gcp.cloudrunv2.JobTemplateTemplateVolumeCloudSqlInstanceArgs(
                            instances=[connection_name]
                        ),
                    )
                ],
                containers=[
                    gcp.cloudrunv2.JobTemplateTemplateContainerArgs(
                        name="migrate",
                        image=spec.effective_image,
                        commands=[MIGRATE_COMMAND[0]],
                        args=list(MIGRATE_COMMAND[1:]),
                        envs=_job_envs(envs),
                        resources=gcp.cloudrunv2.JobTemplateTemplateContainerResourcesArgs(
                            limits={"cpu": "1", "memory": "512Mi"}
                        ),
                        volume_mounts=[
                            gcp.cloudrunv2.JobTemplateTemplateContainerVolumeMountArgs(
                                name=CLOUDSQL_VOLUME, mount_path=CLOUDSQL_MOUNT
                            )
                        ],
                    )
                ],
            ),
        ),
        opts=pulumi.ResourceOptions.merge(
            opts,
            pulumi.ResourceOptions(
                ignore_changes=["template.template.containers[0].image", "client", "clientVersion"]
            ),
        ),
    )
