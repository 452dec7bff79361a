"""Cloud SQL for PostgreSQL: private IP only, backups (PITR in production), database and user,
``max_connections`` declared and checked against the connection budget (docs/capacity.md)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp
import pulumi_random as random

from loist_infra.envspec import EnvSpec, sizing_budget
from loist_infra.network import Network


@dataclass
class Database:
    instance: gcp.sql.DatabaseInstance
    database: gcp.sql.Database
    user: gcp.sql.User
    password: random.RandomPassword


def build_database(spec: EnvSpec, network: Network, opts: pulumi.ResourceOptions) -> Database:
    sizing = spec.sizing
    budget = sizing_budget(sizing)
    if not budget.fits:  # refuse to deploy a service that can open more connections than allowed
        raise ValueError(f"{spec.environment}: the database connection budget does not fit: {budget.explain()}")
    instance = gcp.sql.DatabaseInstance(
        spec.sql_instance_name,
        name=spec.sql_instance_name,
        database_version="POSTGRES_15",
        region=spec.region,
        deletion_protection=sizing.deletion_protection,
        settings=gcp.sql.DatabaseInstanceSettingsArgs(
            tier=sizing.sql_tier,
            edition="ENTERPRISE",
            availability_type=sizing.sql_availability,
            disk_size=sizing.sql_disk_gb,
            disk_autoresize=True,
            deletion_protection_enabled=sizing.deletion_protection,
            ip_configuration=gcp.sql.DatabaseInstanceSettingsIpConfigurationArgs(
                ipv4_enabled=False,
                private_network=network.vpc.id,
                ssl_mode="ENCRYPTED_ONLY",
            ),
            backup_configuration=gcp.sql.DatabaseInstanceSettingsBackupConfigurationArgs(
                enabled=True,
                start_time="03:00",
                point_in_time_recovery_enabled=sizing.point_in_time_recovery,
                transaction_log_retention_days=7 if sizing.point_in_time_recovery else None,
                backup_retention_settings=gcp.sql.DatabaseInstanceSettingsBackupConfigurationBackupRetentionSettingsArgs(
                    retained_backups=sizing.backup_retention_count
                ),
            ),
            insights_config=gcp.sql.DatabaseInstanceSettingsInsightsConfigArgs(query_insights_enabled=True),
            # Declared, not left to the tier's default: the connection budget is checked against it.
            database_flags=[
                gcp.sql.DatabaseInstanceSettingsDatabaseFlagArgs(
                    name="max_connections", value=str(sizing.sql_max_connections)
                )
            ],
            user_labels={"app": "loist", "environment": spec.environment},
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[network.peering])),
    )
    database = gcp.sql.Database(
        spec.database_name,
        name=spec.database_name,
        instance=instance.name,
        opts=opts,
    )
    password = random.RandomPassword(
        f"{spec.sql_instance_name}-password",
        length=32,
        special=False,
        opts=opts,
    )
    user = gcp.sql.User(
        f"{spec.sql_instance_name}-{spec.database_user}",
        name=spec.database_user,
        instance=instance.name,
        password=password.result,
        opts=opts,
    )
    return Database(instance=instance, database=database, user=user, password=password)
