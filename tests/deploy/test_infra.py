"""The Pulumi program (deploy/infra) under Pulumi's mocks: no cloud, no CLI.

Each stack is built from its real ``Pulumi.<stack>.yaml`` by the real ``__main__.py``; the mocks
record what would be sent to the Google provider, and these tests assert on that.
"""

from __future__ import annotations

import pytest
from loist_infra.envspec import (
    ENVIRONMENTS,
    LIVE_PATH,
    MIGRATE_COMMAND,
    READY_PATH,
    SIZING,
    EnvSpec,
    origin_of,
    secret_name,
)

from tests.deploy.conftest import Stack, settings_env_names, settings_from

pytestmark = pytest.mark.usefixtures("clean_settings_env")

PUBLIC_MEMBERS = {"allUsers", "allAuthenticatedUsers"}


@pytest.fixture(params=ENVIRONMENTS)
def stack(request: pytest.FixtureRequest, pulumi_stacks: dict[str, Stack]) -> Stack:
    return pulumi_stacks[request.param]


def _env(stack: Stack) -> str:
    return stack.config["loist:environment"]


# --- the app's settings --------------------------------------------------------------------------


def test_service_environment_passes_the_settings_model(stack: Stack) -> None:
    service = stack.one("cloudrunv2/service:Service")
    env = stack.runtime_env(service)
    unknown = set(env) - settings_env_names()
    assert not unknown, f"env vars the app does not read (typo?): {unknown}"
    settings = settings_from(env)
    assert settings.problems() == []
    assert settings.environment == _env(stack)
    assert settings.auth_enabled is True
    assert settings.bearer_token is not None and len(settings.bearer_token.get_secret_value()) >= 32
    assert settings.storage_backend == "gcs" and settings.allow_private_urls is False
    assert settings.database_dialect == "postgresql"
    # The socket the app opens is the one Cloud Run mounts for the instance the program created.
    (volume,) = [v for v in service["inputs"]["template"]["volumes"] if "cloudSqlInstance" in v]
    (connection,) = volume["cloudSqlInstance"]["instances"]
    assert f"/cloudsql/{connection}" in settings.sqlalchemy_url().replace("%3A", ":")
    instance = stack.one("sql/databaseInstance:DatabaseInstance")
    assert (
        connection
        == f"{stack.config['gcp:project']}:{stack.config['gcp:region']}:{instance['inputs']['name']}"
    )
    assert settings.gcs_bucket_name == stack.one("storage/bucket:Bucket")["inputs"]["name"]
    assert settings.embed_base_url and settings.embed_base_url.startswith("https://")


def test_migration_job_runs_db_upgrade_with_the_service_environment(stack: Stack) -> None:
    service = stack.one("cloudrunv2/service:Service")
    job = stack.one("cloudrunv2/job:Job")
    (container,) = job["inputs"]["template"]["template"]["containers"]
    assert [*container["commands"], *container["args"]] == list(MIGRATE_COMMAND)
    assert stack.container_env(job) == stack.container_env(service)
    assert settings_from(stack.runtime_env(job)).problems() == []
    job_template = job["inputs"]["template"]["template"]
    cloudsql = [v for v in service["inputs"]["template"]["volumes"] if "cloudSqlInstance" in v]
    assert job_template["volumes"] == cloudsql
    assert job_template["serviceAccount"] == service["inputs"]["template"]["serviceAccount"]


def test_production_refuses_an_insecure_public_url(pulumi_stacks: dict[str, Stack]) -> None:
    variant = pulumi_stacks["production-variant"]
    problems = settings_from(variant.runtime_env(variant.one("cloudrunv2/service:Service"))).problems()
    assert any("https EMBED_BASE_URL" in p for p in problems), problems


# --- Cloud Run ------------------------------------------------------------------------------------


def test_service_probes_sizing_and_network(stack: Stack) -> None:
    sizing = SIZING[_env(stack)]  # type: ignore[index]
    service = stack.one("cloudrunv2/service:Service")
    inputs = service["inputs"]
    template = inputs["template"]
    container = stack.app_container(service)
    port = container["ports"]["containerPort"]
    assert container["startupProbe"]["httpGet"] == {"path": READY_PATH, "port": port}
    assert container["livenessProbe"]["httpGet"] == {"path": LIVE_PATH, "port": port}
    assert container["resources"]["limits"] == {"cpu": sizing.cpu, "memory": sizing.memory}
    assert template["maxInstanceRequestConcurrency"] == sizing.concurrency
    assert template["scaling"] == {
        "minInstanceCount": sizing.min_instances,
        "maxInstanceCount": sizing.max_instances,
    }
    assert template["timeout"] == f"{sizing.request_timeout_s}s"
    assert container["volumeMounts"] == [{"name": "cloudsql", "mountPath": "/cloudsql"}]
    # Private-IP-only Cloud SQL is reachable only through the environment's own VPC.
    vpc = stack.one("compute/network:Network")["inputs"]["name"]
    assert [i["network"] for i in template["vpcAccess"]["networkInterfaces"]] == [vpc]
    assert inputs["deletionProtection"] is sizing.deletion_protection


def test_service_is_public_but_mcp_is_token_protected(stack: Stack) -> None:
    (invoker,) = stack.of_type("cloudrunv2/serviceIamMember:ServiceIamMember")
    assert invoker["inputs"]["role"] == "roles/run.invoker" and invoker["inputs"]["member"] == "allUsers"
    plain, refs = stack.container_env(stack.one("cloudrunv2/service:Service"))
    assert plain["AUTH_ENABLED"] == "true" and refs["BEARER_TOKEN"] == secret_name(
        "mcp-bearer-token", _env(stack)
    )  # type: ignore[arg-type]


# --- storage -------------------------------------------------------------------------------------


def test_bucket_is_private_with_cors_from_the_public_origin(stack: Stack) -> None:
    bucket = stack.one("storage/bucket:Bucket")["inputs"]
    assert bucket["uniformBucketLevelAccess"] is True
    assert bucket["publicAccessPrevention"] == "enforced"
    for grant in stack.of_type("storage/bucketIAMMember:BucketIAMMember") + stack.of_type("BucketIAMBinding"):
        members = grant["inputs"].get("members") or [grant["inputs"]["member"]]
        assert not PUBLIC_MEMBERS & set(members)
    embed = stack.runtime_env(stack.one("cloudrunv2/service:Service"))["EMBED_BASE_URL"]
    (cors,) = bucket["cors"]
    assert cors["origins"] == [origin_of(embed)]
    assert sorted(cors["methods"]) == ["GET", "HEAD"]


def test_bucket_lifecycle(stack: Stack) -> None:
    bucket = stack.one("storage/bucket:Bucket")["inputs"]
    conditions = [
        rule["condition"] for rule in bucket["lifecycleRules"] if rule["action"]["type"] == "Delete"
    ]
    assert {"age": 1, "matchesPrefixes": ["tmp/"]} in conditions
    if _env(stack) == "staging":
        assert {"age": int(stack.config.get("loist:stagingObjectMaxAgeDays", 30))} in conditions
        assert bucket["versioning"]["enabled"] is False
    else:
        assert bucket["versioning"]["enabled"] is True
        assert any(c.get("daysSinceNoncurrentTime") == 30 for c in conditions)
        assert not any(set(c) == {"age"} for c in conditions), "production must not expire live objects"


# --- Cloud SQL -----------------------------------------------------------------------------------


def test_cloud_sql_is_private_with_backups(stack: Stack) -> None:
    instance = stack.one("sql/databaseInstance:DatabaseInstance")
    settings = instance["inputs"]["settings"]
    ip = settings["ipConfiguration"]
    assert ip["ipv4Enabled"] is False
    assert ip["privateNetwork"] == stack.one("compute/network:Network")["id"]
    assert not ip.get("authorizedNetworks")
    backups = settings["backupConfiguration"]
    assert backups["enabled"] is True
    assert bool(backups.get("pointInTimeRecoveryEnabled")) is (_env(stack) == "production")
    assert instance["inputs"]["databaseVersion"].startswith("POSTGRES_")
    database = stack.one("sql/database:Database")["inputs"]["name"]
    assert database == f"loist_mvp_{_env(stack)}"
    assert stack.runtime_env(stack.one("cloudrunv2/service:Service"))["DB_NAME"] == database
    user = stack.one("sql/user:User")["inputs"]
    assert user["name"] == stack.runtime_env(stack.one("cloudrunv2/service:Service"))["DB_USER"]


def test_staging_database_name_is_the_operators_one(pulumi_stacks: dict[str, Stack]) -> None:
    assert pulumi_stacks["staging"].one("sql/database:Database")["inputs"]["name"] == "loist_mvp_staging"


# --- secrets and identity ------------------------------------------------------------------------


def test_secrets_are_the_four_suffixed_names_with_generated_values(stack: Stack) -> None:
    env = _env(stack)
    ids = sorted(s["inputs"]["secretId"] for s in stack.of_type("secretmanager/secret:Secret"))
    # The four the app reads as env vars, and the metrics sidecar's config (a mounted file).
    assert ids == sorted(
        f"{key}-{env}"
        for key in ("db-connection-name", "db-password", "gcs-bucket-name", "mcp-bearer-token", "run-gmp-config")
    )
    _, refs = stack.container_env(stack.one("cloudrunv2/service:Service"))
    assert sorted(refs.values()) == [i for i in ids if not i.startswith("run-gmp-config-")]
    # Generated, not typed: the values come from random passwords and other resources' outputs.
    passwords = {p["name"] for p in stack.of_type("random:index/randomPassword:RandomPassword")}
    assert f"mcp-bearer-token-{env}-value" in passwords


def _runtime(stack: Stack) -> dict:
    (account,) = [
        a
        for a in stack.of_type("serviceaccount/account:Account")
        if a["inputs"]["accountId"].startswith("loist-run-")
    ]
    return account


def test_runtime_account_has_least_privilege(stack: Stack) -> None:
    account = _runtime(stack)
    email = f"{account['inputs']['accountId']}@{stack.config['gcp:project']}.iam.gserviceaccount.com"
    member = f"serviceAccount:{email}"
    assert stack.one("cloudrunv2/service:Service")["inputs"]["template"]["serviceAccount"] == email

    mine = [g for g in stack.resources if g["inputs"].get("member") == member]
    by_type: dict[str, list[dict]] = {}
    for grant in mine:
        by_type.setdefault(grant["type"], []).append(grant["inputs"])

    (bucket_grant,) = by_type.pop("gcp:storage/bucketIAMMember:BucketIAMMember")
    assert bucket_grant["role"] == "roles/storage.objectAdmin"
    assert bucket_grant["bucket"] == stack.one("storage/bucket:Bucket")["inputs"]["name"]

    secret_grants = by_type.pop("gcp:secretmanager/secretIamMember:SecretIamMember")
    assert {g["role"] for g in secret_grants} == {"roles/secretmanager.secretAccessor"}
    assert sorted(g["secretId"] for g in secret_grants) == sorted(
        s["id"] for s in stack.of_type("/secret:Secret")
    )

    project_grants = {g["role"]: g for g in by_type.pop("gcp:projects/iAMMember:IAMMember")}
    assert sorted(project_grants) == ["roles/cloudsql.client", "roles/monitoring.metricWriter"]
    project_grant = project_grants["roles/cloudsql.client"]
    instance = stack.one("sql/databaseInstance:DatabaseInstance")["inputs"]["name"]
    assert f'/instances/{instance}"' in project_grant["condition"]["expression"]

    (self_grant,) = by_type.pop("gcp:serviceaccount/iAMMember:IAMMember")
    assert self_grant["role"] == "roles/iam.serviceAccountTokenCreator"
    assert self_grant["serviceAccountId"] == account["id"]
    assert by_type == {}, "no other grant for the runtime account"


def test_deployer_has_least_privilege_and_can_sign_the_check_audio(stack: Stack) -> None:
    """The pipeline's ``smoke-audio`` step uploads and signs as the runtime account: the deployer
    gets token creator on that one account (and on nothing else), and no role on the bucket."""
    env = _env(stack)
    spec = EnvSpec(environment=env, project=stack.config["gcp:project"], region=stack.config["gcp:region"])  # type: ignore[arg-type]
    (deployer,) = [
        a for a in stack.of_type("serviceaccount/account:Account") if a["inputs"]["accountId"] == spec.deployer_account_id
    ]
    runtime = _runtime(stack)
    assert runtime["inputs"]["accountId"] == spec.runtime_account_id
    member = f"serviceAccount:{spec.deployer_account_email}"
    grants = [g for g in stack.resources if g["inputs"].get("member") == member]
    got = sorted((g["type"].split(":")[-1], g["inputs"]["role"]) for g in grants)
    assert got == sorted(
        [
            ("RepositoryIamMember", "roles/artifactregistry.writer"),
            ("IAMMember", "roles/run.developer"),
            ("IAMMember", "roles/logging.logWriter"),
            ("IAMMember", "roles/ondemandscanning.admin"),  # the scan-image gate
            ("IAMMember", "roles/containeranalysis.occurrences.editor"),  # sbom-attach
            ("IAMMember", "roles/iam.serviceAccountUser"),
            ("IAMMember", "roles/iam.serviceAccountTokenCreator"),
            ("SecretIamMember", "roles/secretmanager.secretAccessor"),
        ]
    )
    on_accounts = {
        g["inputs"]["role"]: g["inputs"]["serviceAccountId"]
        for g in grants
        if g["type"] == "gcp:serviceaccount/iAMMember:IAMMember"
    }
    assert on_accounts == {
        "roles/iam.serviceAccountUser": runtime["id"],
        "roles/iam.serviceAccountTokenCreator": runtime["id"],
    }
    assert runtime["id"] == f"projects/{spec.project}/serviceAccounts/{spec.runtime_account_email}"
    assert not [g for g in grants if "bucket" in g["inputs"]], "the deployer needs no bucket role"
    (secret_grant,) = [g for g in grants if g["type"].endswith("SecretIamMember")]
    (token_secret,) = [
        s for s in stack.of_type("/secret:Secret") if s["inputs"]["secretId"] == spec.secret("mcp-bearer-token")
    ]
    assert secret_grant["inputs"]["secretId"] == token_secret["id"]
    # The account the runtime grants give objectAdmin on the bucket is the one the step signs as.
    (bucket_grant,) = [
        g
        for g in stack.of_type("storage/bucketIAMMember:BucketIAMMember")
        if g["inputs"]["member"] == f"serviceAccount:{spec.runtime_account_email}"
    ]
    assert bucket_grant["inputs"]["bucket"] == spec.bucket_name
    assert bucket_grant["inputs"]["role"] == "roles/storage.objectAdmin"


def test_no_broad_roles_anywhere(stack: Stack) -> None:
    for resource in stack.resources:
        role = resource["inputs"].get("role", "")
        assert role not in {
            "roles/owner",
            "roles/editor",
            "roles/storage.admin",
            "roles/secretmanager.admin",
        }, resource["name"]
        if resource["type"].startswith("gcp:secretmanager/secretIamMember"):
            assert resource["inputs"]["member"] not in PUBLIC_MEMBERS


def test_artifact_registry_repository(stack: Stack) -> None:
    repo = stack.one("artifactregistry/repository:Repository")["inputs"]
    assert repo["format"] == "DOCKER" and repo["repositoryId"] == f"loist-{_env(stack)}"
    image = stack.one("cloudrunv2/service:Service")["inputs"]["template"]["containers"][0]["image"]
    assert image.startswith(
        f"{stack.config['gcp:region']}-docker.pkg.dev/{stack.config['gcp:project']}/{repo['repositoryId']}/"
    )


# --- isolation -----------------------------------------------------------------------------------


def test_staging_and_production_share_nothing(pulumi_stacks: dict[str, Stack]) -> None:
    staging, production = pulumi_stacks["staging"], pulumi_stacks["production"]

    def physical(stack: Stack) -> set[str]:
        names: set[str] = set()
        for resource in stack.resources:
            inputs = resource["inputs"]
            scope = inputs.get("instance", "")  # a SQL user or database lives inside its instance
            for key in ("name", "secretId", "accountId", "repositoryId"):
                if isinstance(inputs.get(key), str):
                    names.add(f"{resource['type']}={scope}/{inputs[key]}")
        return names

    assert not physical(staging) & physical(production)
    assert not {r["name"] for r in staging.resources} & {r["name"] for r in production.resources}
    # A staging identity is never granted anything on a production resource, and vice versa.
    for one, other in ((staging, production), (production, staging)):
        other_ids = {r["id"] for r in other.resources} | {r["inputs"].get("name") for r in other.resources}
        for grant in one.resources:
            if "IAM" in grant["type"] or "Iam" in grant["type"]:
                for key in ("bucket", "secretId", "serviceAccountId", "repository", "name"):
                    assert grant["inputs"].get(key) not in other_ids - {None}, grant["name"]


def test_cloud_build_trigger_when_a_repository_is_configured(pulumi_stacks: dict[str, Stack]) -> None:
    assert not pulumi_stacks["production"].of_type("cloudbuild/trigger:Trigger")
    trigger = pulumi_stacks["production-variant"].one("cloudbuild/trigger:Trigger")["inputs"]
    assert trigger["filename"] == "cloudbuild.yaml"
    assert trigger["github"]["push"]["branch"] == "^main$"
    assert "loist-deploy-production@" in trigger["serviceAccount"]
