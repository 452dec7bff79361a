"""One complete, isolated Loist environment (staging or production) as a ComponentResource."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from loist_infra.database import build_database
from loist_infra.edge import build_edge
from loist_infra.envspec import EnvSpec, default_run_url
from loist_infra.identity import build_runtime_account, grant_runtime_access
from loist_infra.monitoring import build_metrics_sidecar, build_monitoring
from loist_infra.network import build_network
from loist_infra.pipeline import build_deployer
from loist_infra.registry import build_repository
from loist_infra.run import build_migration_job, build_service, service_envs
from loist_infra.secrets import build_secrets
from loist_infra.storage import build_bucket


def resolve_embed_base_url(spec: EnvSpec) -> pulumi.Output[str]:
    """The configured public URL, or Cloud Run's deterministic URL for the service.

    Why not the service's ``uri`` output: the service's own environment needs it, which would be
    a cycle. The deterministic URL only needs the project number.
    """
    if spec.embed_base_url:
        return pulumi.Output.from_input(spec.embed_base_url.rstrip("/"))
    project = gcp.organizations.get_project_output(project_id=spec.project)
    return project.number.apply(lambda number: default_run_url(spec.service_name, str(number), spec.region))


class LoistEnvironment(pulumi.ComponentResource):
    """Network, bucket, database, secrets, identities, registry, Cloud Run service and job, and
    (production, staging in allow-list mode) the load balancer with Cloud Armor in front."""

    def __init__(self, spec: EnvSpec, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("loist:index:Environment", f"loist-{spec.environment}", None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.spec = spec
        self.embed_base_url = resolve_embed_base_url(spec)

        self.network = build_network(spec, child)
        self.bucket = build_bucket(spec, self.embed_base_url, child)
        self.database = build_database(spec, self.network, child)
        self.secrets = build_secrets(
            spec,
            connection_name=self.database.instance.connection_name,
            db_password=self.database.password.result,
            bucket_name=self.bucket.name,
            opts=child,
        )
        self.runtime_account = build_runtime_account(spec, child)
        grants = grant_runtime_access(
            spec,
            self.runtime_account,
            bucket=self.bucket,
            instance=self.database.instance,
            secrets=self.secrets.secrets,
            opts=child,
        )
        self.repository = build_repository(spec, child)
        self.deployer = build_deployer(
            spec,
            runtime_account=self.runtime_account,
            repository=self.repository,
            token_secret=self.secrets.secrets["mcp-bearer-token"],
            opts=child,
        )

        envs = service_envs(spec, self.embed_base_url, self.secrets.by_env())
        self.metrics = build_metrics_sidecar(spec, self.runtime_account, child)
        # The revision must not start before it may read its secrets and reach its database.
        run_opts = pulumi.ResourceOptions.merge(
            child,
            pulumi.ResourceOptions(
                depends_on=[*grants, *self.secrets.versions.values(), self.database.user, *self.metrics.dependencies]
            ),
        )
        connection_name = self.database.instance.connection_name
        self.job = build_migration_job(
            spec,
            account=self.runtime_account,
            network=self.network,
            connection_name=connection_name,
            envs=envs,
            opts=run_opts,
        )
        self.service = build_service(
            spec,
            account=self.runtime_account,
            network=self.network,
            connection_name=connection_name,
            envs=envs,
            opts=run_opts,
            sidecars=[self.metrics.container],
            sidecar_volumes=[self.metrics.volume],
        )
        self.monitoring = build_monitoring(spec, self.service, child, instance=self.database.instance)
        # Production, and staging in allow-list mode: the HTTPS load balancer with Cloud Armor.
        self.edge = build_edge(spec, self.service, child) if spec.behind_load_balancer else None

        self.register_outputs(
            {
                "embed_base_url": self.embed_base_url,
                "service_url": self.service.uri,
                "bucket": self.bucket.name,
                "connection_name": connection_name,
                "runtime_account": self.runtime_account.email,
                "deployer_account": self.deployer.email,
                "load_balancer_ip": self.edge.address.address if self.edge else None,
            }
        )
