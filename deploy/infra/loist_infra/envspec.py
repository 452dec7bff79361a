"""Per-environment names and settings: the one source of truth for staging and production.

Why a separate, dependency-free module: the Pulumi program, the Cloud Build files, the operator
scripts and the tests must all agree on the same names (service, job, secrets, database, image
repository). The Pulumi program imports this module; the tests import it too and compare it with
``cloudbuild*.yaml``, ``scripts/*`` and ``loist.config.Settings``, so a renamed secret or a setting
the app needs but nobody provides fails a test instead of a deploy. It imports nothing from
Pulumi, so plain Python (and the tests) can use it.

Naming rule, everywhere: every per-environment resource name ends with the environment name
(``mcp-bearer-token-staging``, ``mcp-bearer-token-production``). Staging and production share no
bucket, database instance, secret, service account, network, image repository or service.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

CloudEnvironment = Literal["staging", "production"]
ENVIRONMENTS: tuple[CloudEnvironment, ...] = ("staging", "production")

#: Secret Manager secrets, by the environment variable Cloud Run fills from each one.
#: The secret's name is ``<key>-<environment>`` (see :func:`secret_name`).
SECRET_ENV: dict[str, str] = {
    "DB_CONNECTION_NAME": "db-connection-name",
    "DB_PASSWORD": "db-password",
    "GCS_BUCKET_NAME": "gcs-bucket-name",
    "BEARER_TOKEN": "mcp-bearer-token",
}

#: The container port Cloud Run sends requests to. Cloud Run sets ``PORT`` to it; the image's
#: command passes ``--port $PORT`` to ``loist serve``.
CONTAINER_PORT = 8080

#: Where Cloud Run mounts the Cloud SQL unix socket; ``DB_CONNECTION_NAME`` means
#: ``/cloudsql/<connection name>`` to the app (see loist.config.Settings.sqlalchemy_url).
CLOUDSQL_MOUNT = "/cloudsql"

#: Health routes the probes (Cloud Run, Docker, compose) use.
LIVE_PATH = "/health/live"
READY_PATH = "/health/ready"

#: The app's Prometheus metrics listener (``METRICS_PORT``; ``METRICS_HOST`` stays 127.0.0.1):
#: never the public port. On Cloud Run the Managed Service for Prometheus sidecar scrapes it over
#: the instance's shared localhost.
METRICS_PORT = 9464
METRICS_PATH = "/metrics"

#: The app's container in the Cloud Run service (the ingress container; sidecars start after it).
APP_CONTAINER = "loist"

#: Google's Managed Service for Prometheus collector for Cloud Run, run as a sidecar.
GMP_SIDECAR_IMAGE = "us-docker.pkg.dev/cloud-ops-agents-artifacts/cloud-run-gmp-sidecar/cloud-run-gmp-sidecar:1.2.0"

#: Image name inside the Artifact Registry repository.
IMAGE_NAME = "loist"

#: The one migration command, run by the Cloud Run job and the compose ``migrate`` service.
MIGRATE_COMMAND: tuple[str, ...] = ("loist", "db", "upgrade")

#: The revision tag the pipelines give a new revision before it gets traffic is
#: ``<CANDIDATE_TAG_PREFIX><short commit sha>``.
CANDIDATE_TAG_PREFIX = "sha-"


def secret_name(key: str, environment: CloudEnvironment) -> str:
    """``db-password`` + ``staging`` -> ``db-password-staging`` (always suffixed)."""
    if key not in SECRET_ENV.values():
        raise KeyError(f"unknown secret key {key!r}")
    return f"{key}-{environment}"


@dataclass(frozen=True)
class Sizing:
    """Cloud Run and Cloud SQL capacity. Why per environment: staging scales to zero, production
    keeps one warm instance and a highly available database. The figures and the measurements they
    rest on: docs/capacity.md."""

    cpu: str
    memory: str
    concurrency: int
    min_instances: int
    max_instances: int
    request_timeout_s: int
    web_workers: int  # server processes per instance: one per vCPU (WEB_WORKERS)
    db_pool_size: int  # per process (DB_POOL_SIZE)
    db_max_overflow: int  # per process (DB_MAX_OVERFLOW)
    sql_max_connections: int  # declared on the instance (database flag max_connections)
    sql_reserved_connections: int  # kept free for superusers, Cloud SQL's own, an operator's psql
    sql_tier: str
    sql_availability: Literal["ZONAL", "REGIONAL"]
    sql_disk_gb: int
    backup_retention_count: int
    point_in_time_recovery: bool
    deletion_protection: bool
    bucket_versioning: bool


SIZING: dict[CloudEnvironment, Sizing] = {
    "staging": Sizing(
        cpu="1",
        memory="1Gi",
        concurrency=40,
        min_instances=0,
        max_instances=3,
        request_timeout_s=300,
        web_workers=1,
        db_pool_size=5,
        db_max_overflow=5,
        sql_max_connections=50,  # db-g1-small's default, declared so it cannot drift
        sql_reserved_connections=10,
        sql_tier="db-g1-small",
        sql_availability="ZONAL",
        sql_disk_gb=10,
        backup_retention_count=7,
        point_in_time_recovery=False,
        deletion_protection=False,
        bucket_versioning=False,
    ),
    "production": Sizing(
        cpu="2",
        memory="2Gi",
        concurrency=80,
        min_instances=1,
        max_instances=20,
        request_timeout_s=300,
        web_workers=2,
        db_pool_size=4,
        db_max_overflow=2,
        sql_max_connections=400,  # the default for 7.5 GB, declared so it cannot drift
        sql_reserved_connections=20,
        sql_tier="db-custom-2-7680",
        sql_availability="REGIONAL",
        sql_disk_gb=50,
        backup_retention_count=30,
        point_in_time_recovery=True,
        deletion_protection=True,
        bucket_versioning=True,
    ),
}


#: Tasks of the migration job that can run at once (its ``parallelism``).
MIGRATION_JOB_TASKS = 1


@dataclass(frozen=True)
class ConnectionBudget:
    """PostgreSQL connections the deployment can open at most, against what the instance allows."""

    per_process: int  # DB_POOL_SIZE + DB_MAX_OVERFLOW
    service: int  # max instances x WEB_WORKERS x per_process
    job: int  # migration job tasks x per_process
    max_connections: int
    reserved: int

    @property
    def needed(self) -> int:
        return self.service + self.job

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved

    @property
    def fits(self) -> bool:
        return self.needed <= self.available

    def explain(self) -> str:
        return (f"{self.needed} connections at most (service {self.service} + migration job {self.job}, "
                f"{self.per_process} per process) against max_connections {self.max_connections} "
                f"- {self.reserved} reserved = {self.available}")


def connection_budget(
    *, max_instances: int, web_workers: int, pool_size: int, max_overflow: int, job_tasks: int,
    max_connections: int, reserved: int,
) -> ConnectionBudget:
    """The budget docs/capacity.md states: every process of every instance at its pool's limit."""
    per_process = pool_size + max_overflow
    return ConnectionBudget(
        per_process=per_process, service=max_instances * web_workers * per_process,
        job=job_tasks * per_process, max_connections=max_connections, reserved=reserved,
    )


def sizing_budget(sizing: Sizing) -> ConnectionBudget:
    return connection_budget(
        max_instances=sizing.max_instances, web_workers=sizing.web_workers, pool_size=sizing.db_pool_size,
        max_overflow=sizing.db_max_overflow, job_tasks=MIGRATION_JOB_TASKS,
        max_connections=sizing.sql_max_connections, reserved=sizing.sql_reserved_connections,
    )


@dataclass(frozen=True)
class EnvSpec:
    """Everything named or sized for one cloud environment."""

    environment: CloudEnvironment
    project: str
    region: str
    #: Public base URL of the service (custom domain). None: the Cloud Run URL
    #: ``https://<service>-<project number>.<region>.run.app``, computed by the program.
    embed_base_url: str | None = None
    #: Container image for the service and the job; None: ``<registry>/<IMAGE_NAME>:bootstrap``.
    image: str | None = None
    #: Age in days after which every staging object is deleted (staging data is disposable).
    staging_object_max_age_days: int = 30
    log_level: str = "INFO"
    #: Optional "owner/repo" on GitHub: when set, the program creates the Cloud Build trigger.
    github_repo: str | None = None
    #: Staging's allow-list mode: only these source ranges (CIDR) get past Cloud Armor; setting any
    #: puts staging behind the load balancer too. Production never has one (it is public).
    allowed_source_ranges: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Monitoring: e-mail addresses that get a notification channel each, existing channels
    #: (``projects/<p>/notificationChannels/<id>``: Slack, PagerDuty...) added as they are, and
    #: the SLO targets (None: the environment's default in loist_infra.signals.OBJECTIVES).
    alert_emails: tuple[str, ...] = ()
    alert_channels: tuple[str, ...] = ()
    slo_availability: float | None = None
    slo_latency_ms: int | None = None

    # --- the edge (loist_infra.edge) -----------------------------------------------------------
    @property
    def behind_load_balancer(self) -> bool:
        """Production always; staging when it is limited to an allow-list of source ranges."""
        return self.environment == "production" or bool(self.allowed_source_ranges)

    @property
    def run_ingress(self) -> str:
        """Cloud Run ingress: only the load balancer when one is in front, else the internet."""
        return "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER" if self.behind_load_balancer else "INGRESS_TRAFFIC_ALL"

    @property
    def trusted_proxy_count(self) -> int:
        """X-Forwarded-For entries appended by our own front ends: Google's load balancer
        appends "<client>, <load balancer>", Cloud Run alone appends "<client>"."""
        return 2 if self.behind_load_balancer else 1

    @property
    def public_host(self) -> str | None:
        """The custom domain the load balancer's certificate is for (EMBED_BASE_URL's host)."""
        if not self.embed_base_url:
            return None
        return origin_of(self.embed_base_url).split("://", 1)[1].split(":", 1)[0]

    @property
    def run_network_tag(self) -> str:
        """Network tag of the service's and the job's VPC interfaces (egress firewall target)."""
        return f"loist-run-{self.suffix}"

    # --- names ---------------------------------------------------------------------------------
    @property
    def suffix(self) -> str:
        return self.environment

    @property
    def service_name(self) -> str:
        return f"loist-{self.suffix}"

    @property
    def job_name(self) -> str:
        return f"loist-migrate-{self.suffix}"

    @property
    def repository_id(self) -> str:
        return f"loist-{self.suffix}"

    @property
    def registry(self) -> str:
        return f"{self.region}-docker.pkg.dev/{self.project}/{self.repository_id}"

    @property
    def image_repo(self) -> str:
        """Image without tag; pipelines push ``:<short sha>`` and ``:latest`` here."""
        return f"{self.registry}/{IMAGE_NAME}"

    @property
    def effective_image(self) -> str:
        return self.image or f"{self.image_repo}:bootstrap"

    @property
    def bucket_name(self) -> str:
        # Bucket names are global: the project id makes them unique.
        return f"{self.project}-loist-{self.suffix}"

    @property
    def sql_instance_name(self) -> str:
        return f"loist-{self.suffix}-pg"

    @property
    def database_name(self) -> str:
        return f"loist_mvp_{self.suffix}"

    @property
    def database_user(self) -> str:
        return "loist"

    @property
    def runtime_account_id(self) -> str:
        return f"loist-run-{self.suffix}"

    @property
    def runtime_account_email(self) -> str:
        return f"{self.runtime_account_id}@{self.project}.iam.gserviceaccount.com"

    @property
    def deployer_account_id(self) -> str:
        return f"loist-deploy-{self.suffix}"

    @property
    def deployer_account_email(self) -> str:
        return f"{self.deployer_account_id}@{self.project}.iam.gserviceaccount.com"

    @property
    def network_name(self) -> str:
        return f"loist-{self.suffix}-vpc"

    @property
    def metrics_config_secret(self) -> str:
        """Secret Manager secret holding the sidecar's RunMonitoring config (not an env var)."""
        return f"run-gmp-config-{self.suffix}"

    @property
    def branch(self) -> str:
        """The branch whose pushes deploy here."""
        return "main" if self.environment == "production" else "dev"

    @property
    def cloudbuild_file(self) -> str:
        return "cloudbuild.yaml" if self.environment == "production" else "cloudbuild-staging.yaml"

    @property
    def sizing(self) -> Sizing:
        return SIZING[self.environment]

    def secret(self, key: str) -> str:
        return secret_name(key, self.environment)

    @property
    def secret_names(self) -> dict[str, str]:
        """Env var -> Secret Manager secret name."""
        return {env: self.secret(key) for env, key in SECRET_ENV.items()}

    # --- the service's plain (non-secret) environment ------------------------------------------
    def plain_env(self, embed_base_url: str) -> dict[str, str]:
        """Every non-secret setting the app gets on Cloud Run. Names are Settings fields."""
        env = {
            "ENVIRONMENT": self.environment,
            "LOIST_DATA_DIR": "/tmp/loist",  # noqa: S108 - scratch space; Cloud Run's disk is tmpfs
            "DB_NAME": self.database_name,
            "DB_USER": self.database_user,
            "STORAGE_BACKEND": "gcs",
            "GCS_PROJECT_ID": self.project,
            "SERVER_TRANSPORT": "http",
            "SERVER_HOST": "0.0.0.0",  # noqa: S104 - inside the container, behind Cloud Run
            "AUTH_ENABLED": "true",
            "ALLOW_PRIVATE_URLS": "false",
            "RATE_LIMITS_ENABLED": "true",
            "TRUSTED_PROXY_COUNT": str(self.trusted_proxy_count),
            "EMBED_BASE_URL": embed_base_url,
            "CORS_ORIGINS": "*",
            "LOG_LEVEL": self.log_level,
            "LOG_FORMAT": "json",
            "METRICS_PORT": str(METRICS_PORT),
            # Capacity (docs/capacity.md): processes per instance and each one's database pool.
            "WEB_WORKERS": str(self.sizing.web_workers),
            "DB_POOL_SIZE": str(self.sizing.db_pool_size),
            "DB_MAX_OVERFLOW": str(self.sizing.db_max_overflow),
        }
        env.update(self.extra_env)
        return env

    def cloudbuild_substitutions(self) -> dict[str, str]:
        """The substitutions ``cloudbuild*.yaml`` must declare, with these exact defaults."""
        return {
            "_ENV": self.environment,
            "_REGION": self.region,
            "_SERVICE": self.service_name,
            "_JOB": self.job_name,
            "_REPOSITORY": self.repository_id,
            "_IMAGE": IMAGE_NAME,
        }


def default_run_url(service_name: str, project_number: str, region: str) -> str:
    """Cloud Run's deterministic service URL (``https://<service>-<number>.<region>.run.app``)."""
    return f"https://{service_name}-{project_number}.{region}.run.app"


def origin_of(url: str) -> str:
    """``https://music.example.com/x`` -> ``https://music.example.com`` (for bucket CORS)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"
