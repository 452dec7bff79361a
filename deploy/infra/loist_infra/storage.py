"""The environment's audio bucket: private, uniform access, CORS for the player, lifecycle rules."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

from loist_infra.envspec import EnvSpec, origin_of

#: Objects under this prefix are scratch copies (uploads in flight); gone after a day.
TEMP_PREFIX = "tmp/"
NONCURRENT_RETENTION_DAYS = 30


def lifecycle_rules(spec: EnvSpec) -> list[gcp.storage.BucketLifecycleRuleArgs]:
    """Why each rule: temp objects never outlive a day; staging data is disposable after a
    configurable age; production keeps deleted/overwritten versions 30 days for recovery."""
    delete = gcp.storage.BucketLifecycleRuleActionArgs(type="Delete")
    rules = [
        gcp.storage.BucketLifecycleRuleArgs(
            action=delete,
            condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=1, matches_prefixes=[TEMP_PREFIX]),
        )
    ]
    if spec.environment == "staging":
        rules.append(
            gcp.storage.BucketLifecycleRuleArgs(
                action=delete,
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(age=spec.staging_object_max_age_days),
            )
        )
    if spec.sizing.bucket_versioning:
        rules.append(
            gcp.storage.BucketLifecycleRuleArgs(
                action=delete,
                condition=gcp.storage.BucketLifecycleRuleConditionArgs(
                    days_since_noncurrent_time=NONCURRENT_RETENTION_DAYS, with_state="ARCHIVED"
                ),
            )
        )
    return rules


def build_bucket(
    spec: EnvSpec, embed_base_url: pulumi.Input[str], opts: pulumi.ResourceOptions
) -> gcp.storage.Bucket:
    origin = pulumi.Output.from_input(embed_base_url).apply(origin_of)
    return gcp.storage.Bucket(
        spec.bucket_name,
        name=spec.bucket_name,
        location=spec.region,
        storage_class="STANDARD",
        uniform_bucket_level_access=True,
        public_access_prevention="enforced",
        force_destroy=not spec.sizing.deletion_protection,
        versioning=gcp.storage.BucketVersioningArgs(enabled=spec.sizing.bucket_versioning),
        cors=[
            gcp.storage.BucketCorArgs(
                origins=[origin],
                methods=["GET", "HEAD"],
                response_headers=["Content-Type", "Content-Length", "Content-Range", "Accept-Ranges", "ETag"],
                max_age_seconds=3600,
            )
        ],
        lifecycle_rules=lifecycle_rules(spec),
        labels={"app": "loist", "environment": spec.environment},
        opts=opts,
    )
