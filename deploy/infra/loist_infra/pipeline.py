"""The identity Cloud Build deploys with, per environment, and (optionally) its trigger.

The deployer may push to its own repository, run its own job, deploy its own service, act as its
own runtime account, and read its own bearer token (for the deployment check). Nothing in the
other environment.

The deployment check (``smoke-audio`` step) needs audio the candidate can download: the deployer
uploads a WAV to the bucket's ``tmp/`` and signs a 15-minute URL *as the runtime account*, which
already has objectAdmin on that bucket. So the deployer gets one more grant, token creator on that
one runtime account, and no bucket role at all. Why not objectCreator on ``tmp/`` for the deployer
itself: ``gcloud storage cp`` also reads and lists the destination (objects.get / objects.list,
which a ``tmp/`` IAM condition cannot scope), and a URL signed by the deployer would need it to
read objects too. Token creator widens nothing real: actAs plus run.developer already let the
deployer run any code as the runtime account.
"""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from loist_infra.envspec import EnvSpec


def build_deployer(
    spec: EnvSpec,
    *,
    runtime_account: gcp.serviceaccount.Account,
    repository: gcp.artifactregistry.Repository,
    token_secret: gcp.secretmanager.Secret,
    opts: pulumi.ResourceOptions,
) -> gcp.serviceaccount.Account:
    deployer = gcp.serviceaccount.Account(
        spec.deployer_account_id,
        account_id=spec.deployer_account_id,
        display_name=f"Loist {spec.environment} Cloud Build deployer",
        opts=opts,
    )
    member = deployer.email.apply(lambda email: f"serviceAccount:{email}")
    gcp.artifactregistry.RepositoryIamMember(
        f"{spec.deployer_account_id}-push",
        repository=repository.name,
        location=spec.region,
        role="roles/artifactregistry.writer",
        member=member,
        opts=opts,
    )
    # run.developer is project-level; gcloud needs it to deploy revisions and execute the job.
    # The scan-image step runs On-Demand Scanning; sbom-attach records the SBOM as an occurrence.
    for role in (
        "roles/run.developer",
        "roles/logging.logWriter",
        "roles/ondemandscanning.admin",
        "roles/containeranalysis.occurrences.editor",
    ):
        gcp.projects.IAMMember(
            f"{spec.deployer_account_id}-{role.split('/')[1]}",
            project=spec.project,
            role=role,
            member=member,
            opts=opts,
        )
    gcp.serviceaccount.IAMMember(
        f"{spec.deployer_account_id}-act-as-runtime",
        service_account_id=runtime_account.name,
        role="roles/iam.serviceAccountUser",
        member=member,
        opts=opts,
    )
    # Upload and sign the deployment check's audio as the runtime account (see the module doc).
    gcp.serviceaccount.IAMMember(
        f"{spec.deployer_account_id}-sign-as-runtime",
        service_account_id=runtime_account.name,
        role="roles/iam.serviceAccountTokenCreator",
        member=member,
        opts=opts,
    )
    gcp.secretmanager.SecretIamMember(
        f"{spec.deployer_account_id}-token-accessor",
        secret_id=token_secret.id,
        role="roles/secretmanager.secretAccessor",
        member=member,
        opts=opts,
    )
    if spec.github_repo:
        owner, _, name = spec.github_repo.partition("/")
        gcp.cloudbuild.Trigger(
            f"loist-{spec.environment}-deploy",
            name=f"loist-{spec.environment}-deploy",
            location="global",
            description=f"Test, build, migrate, deploy and verify {spec.environment} from {spec.branch}",
            filename=spec.cloudbuild_file,
            service_account=deployer.name,
            github=gcp.cloudbuild.TriggerGithubArgs(
                owner=owner,
                name=name,
                push=gcp.cloudbuild.TriggerGithubPushArgs(branch=f"^{spec.branch}$"),
            ),
            opts=opts,
        )
    return deployer
