"""Monitoring for one environment: metrics sidecar, uptime checks, alert policies, SLOs, dashboard.

What is looked at, and with which thresholds, is data in :mod:`loist_infra.signals`; this module
turns it into Cloud Monitoring resources. Everything points at what the program itself created:
the uptime checks at the service's own ``uri`` output and the app's health paths
(envspec.LIVE_PATH / READY_PATH), the Cloud SQL alerts at the environment's instance, the
connection alert at that instance's ``max_connections``, the instance alert at the service's
maximum instance count.

App metrics reach Cloud Monitoring through Google's Managed Service for Prometheus sidecar
(:func:`build_metrics_sidecar`), which scrapes ``METRICS_PORT`` on the instance's localhost; the
error-log spike is a log-based metric (the log already has every ERROR line, with its trace).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_gcp as gcp

from loist_infra.dashboards import alert_expr, cloud_dashboard
from loist_infra.envspec import (
    APP_CONTAINER,
    GMP_SIDECAR_IMAGE,
    LIVE_PATH,
    METRICS_PATH,
    METRICS_PORT,
    READY_PATH,
    EnvSpec,
)
from loist_infra.signals import (
    ALERTS,
    BURN_RATES,
    SLO_WINDOW_DAYS,
    UPTIME,
    Alert,
    Objectives,
    cloud_scope,
    error_log_filter,
    objectives_for,
    slo_specs,
)

SIDECAR_CONTAINER = "metrics"
SIDECAR_VOLUME = "run-gmp-config"
#: Where the sidecar reads its RunMonitoring config (Google's documented path).
SIDECAR_CONFIG_DIR = "/etc/rungmp"
UPTIME_PATHS = (READY_PATH, LIVE_PATH)


# --- the Managed Service for Prometheus sidecar ---------------------------------------------------


def run_monitoring_config(interval_s: int = 30) -> str:
    """The sidecar's RunMonitoring config: scrape the app's metrics listener, not the public port
    (the sidecar's default is ``:8080/metrics``, which the app answers 404)."""
    config = {
        "apiVersion": "monitoring.googleapis.com/v1beta",
        "kind": "RunMonitoring",
        "metadata": {"name": "loist"},
        "spec": {"endpoints": [{"port": str(METRICS_PORT), "path": METRICS_PATH, "interval": f"{interval_s}s"}]},
    }
    return json.dumps(config, indent=2) + "\n"  # JSON is YAML


@dataclass
class MetricsSidecar:
    container: gcp.cloudrunv2.ServiceTemplateContainerArgs
    volume: gcp.cloudrunv2.ServiceTemplateVolumeArgs
    #: The config secret's version and the runtime account's grants: the service waits for them.
    dependencies: list[pulumi.Resource]


def build_metrics_sidecar(
    spec: EnvSpec, account: gcp.serviceaccount.Account, opts: pulumi.ResourceOptions
) -> MetricsSidecar:
    """The collector container, its config (a Secret Manager secret, as Google's sidecar reads it)
    and the two grants the runtime account needs: read that secret, write metrics."""
    name = spec.metrics_config_secret
    secret = gcp.secretmanager.Secret(
        name,
        secret_id=name,
        replication=gcp.secretmanager.SecretReplicationArgs(auto=gcp.secretmanager.SecretReplicationAutoArgs()),
        labels={"app": "loist", "environment": spec.environment},
        opts=opts,
    )
    version = gcp.secretmanager.SecretVersion(
        f"{name}-v1", secret=secret.id, secret_data=run_monitoring_config(), opts=opts
    )
    member = account.email.apply(lambda email: f"serviceAccount:{email}")
    reader = gcp.secretmanager.SecretIamMember(
        f"{spec.runtime_account_id}-{name}-accessor",
        secret_id=secret.id,
        role="roles/secretmanager.secretAccessor",
        member=member,
        opts=opts,
    )
    writer = gcp.projects.IAMMember(
        f"{spec.runtime_account_id}-metric-writer",
        project=spec.project,
        role="roles/monitoring.metricWriter",
        member=member,
        opts=opts,
    )
    container = gcp.cloudrunv2.ServiceTemplateContainerArgs(
        name=SIDECAR_CONTAINER,
        image=GMP_SIDECAR_IMAGE,
        depends_ons=[APP_CONTAINER],
        # CPU allocation (billing) follows the service's app container: with CPU only during
        # requests, a scrape between requests may be skipped, which loses no counts (they are
        # cumulative), only resolution.
        resources=gcp.cloudrunv2.ServiceTemplateContainerResourcesArgs(limits={"cpu": "1", "memory": "256Mi"}),
        volume_mounts=[
            gcp.cloudrunv2.ServiceTemplateContainerVolumeMountArgs(name=SIDECAR_VOLUME, mount_path=SIDECAR_CONFIG_DIR)
        ],
    )
    volume = gcp.cloudrunv2.ServiceTemplateVolumeArgs(
        name=SIDECAR_VOLUME,
        secret=gcp.cloudrunv2.ServiceTemplateVolumeSecretArgs(
            secret=secret.secret_id,
            items=[gcp.cloudrunv2.ServiceTemplateVolumeSecretItemArgs(path="config.yaml", version="latest")],
        ),
    )
    return MetricsSidecar(container=container, volume=volume, dependencies=[version, reader, writer])


# --- thresholds that come from other resources ------------------------------------------------------

#: Cloud SQL for PostgreSQL's default ``max_connections`` by instance memory (GiB, lower bound),
#: from Google's "Quotas and limits" page; used when the instance sets no ``max_connections`` flag.
DEFAULT_MAX_CONNECTIONS = ((120, 1000), (60, 800), (30, 600), (15, 500), (7.5, 400), (6, 200), (3.75, 100), (1.7, 50), (0, 25))
SHARED_CORE_MEMORY_GIB = {"db-f1-micro": 0.6, "db-g1-small": 1.7}


def _get(obj: Any, key: str) -> Any:
    """A field of a Pulumi output object (``obj.key``) or of a plain dict with camelCase keys."""
    if hasattr(obj, key):
        return getattr(obj, key)
    if isinstance(obj, dict):
        return obj.get("".join(w.capitalize() if i else w for i, w in enumerate(key.split("_"))))
    return None


def max_connections(settings: Any) -> int:
    """The instance's ``max_connections``: its flag if set, else Cloud SQL's default for its tier."""
    for flag in _get(settings, "database_flags") or []:
        if _get(flag, "name") == "max_connections":
            return int(_get(flag, "value"))
    tier = str(_get(settings, "tier") or "")
    memory = SHARED_CORE_MEMORY_GIB.get(tier)
    if memory is None:
        memory = int(tier.rsplit("-", 1)[-1]) / 1024  # db-custom-<cpus>-<MiB>
    return next(limit for floor, limit in DEFAULT_MAX_CONNECTIONS if memory >= floor)


def threshold_values(
    spec: EnvSpec, objectives: Objectives, instance: gcp.sql.DatabaseInstance
) -> dict[str, pulumi.Input[float]]:
    """The value each platform alert compares with (``Alert.threshold`` names one)."""
    return {
        "uptime_regions": 1,  # more than one checker region failing (one alone may be its network)
        "sql_cpu": objectives.sql_cpu,
        "sql_disk": objectives.sql_disk,
        "sql_connections": instance.settings.apply(lambda s: objectives.near_max * max_connections(s)),
        "instances": objectives.near_max * spec.sizing.max_instances,
        "error_logs": objectives.error_logs_per_5m,
    }


# --- resources ----------------------------------------------------------------------------------------


def runbook_url(spec: EnvSpec, alert: Alert) -> str | None:
    if not spec.github_repo:
        return None
    return f"https://github.com/{spec.github_repo}/blob/{spec.branch}/docs/operations.md#{alert.anchor}"


def _documentation(spec: EnvSpec, alert: Alert) -> gcp.monitoring.AlertPolicyDocumentationArgs:
    url = runbook_url(spec, alert)
    content = (
        f"**{alert.title}** on `{spec.service_name}` ({spec.environment}). {alert.summary}\n\n"
        f"Runbook: docs/operations.md#{alert.anchor}"
        + (f" ({url})" if url else "")
        + " - what it means, the first three things to check, how to fix."
    )
    links = [gcp.monitoring.AlertPolicyDocumentationLinkArgs(display_name="Runbook", url=url)] if url else None
    return gcp.monitoring.AlertPolicyDocumentationArgs(
        mime_type="text/markdown", subject=f"Loist {spec.environment}: {alert.title}", content=content, links=links
    )


def _threshold(
    title: str, filter_: pulumi.Input[str], value: pulumi.Input[float], duration_s: int,
    aggregation: gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs | None,
) -> gcp.monitoring.AlertPolicyConditionArgs:
    return gcp.monitoring.AlertPolicyConditionArgs(
        display_name=title,
        condition_threshold=gcp.monitoring.AlertPolicyConditionConditionThresholdArgs(
            filter=filter_,
            comparison="COMPARISON_GT",
            threshold_value=value,
            duration=f"{duration_s}s",
            aggregations=[aggregation] if aggregation else None,
            trigger=gcp.monitoring.AlertPolicyConditionConditionThresholdTriggerArgs(count=1),
        ),
    )


def _aggregation(alert: Alert, period_s: int) -> gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs:
    series = alert.series
    assert series is not None
    return gcp.monitoring.AlertPolicyConditionConditionThresholdAggregationArgs(
        alignment_period=f"{period_s}s",
        per_series_aligner=series.aligner,
        cross_series_reducer=series.reducer,
        group_by_fields=list(series.group_by) or None,
    )


@dataclass
class Context:
    """What the conditions of one environment's alerts are built from."""

    spec: EnvSpec
    objectives: Objectives
    names: dict[str, str]  # service, database_id, log_metric
    thresholds: dict[str, pulumi.Input[float]]
    uptime_checks: list[gcp.monitoring.UptimeCheckConfig]
    slos: dict[str, gcp.monitoring.Slo]


def _conditions(alert: Alert, ctx: Context) -> list[gcp.monitoring.AlertPolicyConditionArgs]:
    if alert.promql:
        return [
            gcp.monitoring.AlertPolicyConditionArgs(
                display_name=alert.title,
                condition_prometheus_query_language=gcp.monitoring.AlertPolicyConditionConditionPrometheusQueryLanguageArgs(
                    query=alert_expr(alert, ctx.objectives, cloud_scope(ctx.spec.service_name)),
                    duration=f"{alert.duration_s}s",
                    evaluation_interval="60s",
                    alert_rule=alert.key.replace("-", "_"),
                    rule_group="loist",
                    # The app's series appear only once the sidecar has shipped a first scrape.
                    disable_metric_validation=True,
                ),
            )
        ]
    if alert.slo:
        slo = ctx.slos[alert.slo]
        return [
            _threshold(
                f"{alert.title}: {rate.threshold}x over {rate.lookback_s // 60} minutes",
                slo.name.apply(lambda name, m=rate.lookback_s // 60: f'select_slo_burn_rate("{name}", "{m}m")'),
                rate.threshold,
                0,
                None,
            )
            for rate in BURN_RATES
        ]
    series = alert.series
    assert series is not None
    if series is UPTIME:
        period = max(60, ctx.objectives.uptime_period_s)
        return [
            _threshold(
                f"{alert.title}: {path}",
                check.uptime_check_id.apply(lambda check_id: series.filter(check_id=check_id)),
                ctx.thresholds[alert.threshold],
                alert.duration_s,
                _aggregation(alert, period),
            )
            for path, check in zip(UPTIME_PATHS, ctx.uptime_checks, strict=True)
        ]
    return [
        _threshold(
            alert.title,
            series.filter(**ctx.names),
            ctx.thresholds[alert.threshold],
            alert.duration_s,
            _aggregation(alert, series.period_s),
        )
    ]


def _uptime_checks(
    spec: EnvSpec, service: gcp.cloudrunv2.Service, period_s: int, opts: pulumi.ResourceOptions
) -> list[gcp.monitoring.UptimeCheckConfig]:
    # Behind the load balancer Cloud Run's own URL refuses outside traffic (ingress is the load
    # balancer's only), so the checks go where users go: the service's domain on the balancer.
    host = (
        pulumi.Output.from_input(spec.public_host or "")
        if spec.behind_load_balancer
        else service.uri.apply(lambda uri: urlsplit(uri).hostname or "")
    )
    return [
        gcp.monitoring.UptimeCheckConfig(
            f"{spec.service_name}-uptime-{path.rsplit('/', 1)[-1]}",
            display_name=f"{spec.service_name} {path}",
            period=f"{period_s}s",
            timeout="10s",
            http_check=gcp.monitoring.UptimeCheckConfigHttpCheckArgs(
                path=path, port=443, use_ssl=True, validate_ssl=True, request_method="GET"
            ),
            monitored_resource=gcp.monitoring.UptimeCheckConfigMonitoredResourceArgs(
                type="uptime_url", labels={"host": host, "project_id": spec.project}
            ),
            user_labels={"app": "loist", "environment": spec.environment},
            opts=opts,
        )
        for path in UPTIME_PATHS
    ]


def _slos(spec: EnvSpec, objectives: Objectives, opts: pulumi.ResourceOptions) -> dict[str, gcp.monitoring.Slo]:
    service = gcp.monitoring.CustomService(
        f"{spec.service_name}-slo-service",
        service_id=spec.service_name,
        display_name=f"Loist {spec.environment}",
        opts=opts,
    )
    goals = {"availability": objectives.availability, "latency": objectives.latency_goal}
    slos = {}
    for slo in slo_specs(spec.service_name):
        if slo.distribution:
            sli = gcp.monitoring.SloRequestBasedSliArgs(
                distribution_cut=gcp.monitoring.SloRequestBasedSliDistributionCutArgs(
                    distribution_filter=slo.distribution,
                    range=gcp.monitoring.SloRequestBasedSliDistributionCutRangeArgs(max=objectives.latency_s),
                )
            )
        else:
            sli = gcp.monitoring.SloRequestBasedSliArgs(
                good_total_ratio=gcp.monitoring.SloRequestBasedSliGoodTotalRatioArgs(
                    total_service_filter=slo.total, bad_service_filter=slo.bad
                )
            )
        slos[slo.key] = gcp.monitoring.Slo(
            f"{spec.service_name}-slo-{slo.key}",
            service=service.service_id,
            slo_id=slo.key,
            display_name=slo.title,
            goal=goals[slo.key],
            rolling_period_days=SLO_WINDOW_DAYS,
            request_based_sli=sli,
            opts=opts,
        )
    return slos


def _channels(spec: EnvSpec, opts: pulumi.ResourceOptions) -> list[pulumi.Input[str]]:
    channels: list[pulumi.Input[str]] = [
        gcp.monitoring.NotificationChannel(
            f"{spec.service_name}-email-{n}",
            type="email",
            display_name=f"Loist {spec.environment}: {email}",
            labels={"email_address": email},
            opts=opts,
        ).name
        for n, email in enumerate(spec.alert_emails)
    ]
    return [*channels, *spec.alert_channels]


def build_monitoring(
    spec: EnvSpec,
    service: gcp.cloudrunv2.Service,
    opts: pulumi.ResourceOptions,
    *,
    instance: gcp.sql.DatabaseInstance,
) -> list[pulumi.CustomResource]:
    """Uptime checks, notification channels, the error-log metric, SLOs, alert policies and the
    dashboard of one environment; returns every resource created."""
    objectives = objectives_for(spec.environment, spec.slo_availability, spec.slo_latency_ms)
    log_metric = gcp.logging.Metric(
        f"{spec.service_name}-error-logs",
        name=f"{spec.service_name}-error-logs",
        description=f"ERROR and worse log entries of the Cloud Run service {spec.service_name}",
        filter=error_log_filter(spec.service_name),
        metric_descriptor=gcp.logging.MetricMetricDescriptorArgs(metric_kind="DELTA", value_type="INT64", unit="1"),
        opts=opts,
    )
    names = {
        "service": spec.service_name,
        "database_id": f"{spec.project}:{spec.sql_instance_name}",
        "log_metric": f"{spec.service_name}-error-logs",
    }
    ctx = Context(
        spec=spec,
        objectives=objectives,
        names=names,
        thresholds=threshold_values(spec, objectives, instance),
        uptime_checks=_uptime_checks(spec, service, objectives.uptime_period_s, opts),
        slos=_slos(spec, objectives, opts),
    )
    channels = _channels(spec, opts)
    # The error-log alert reads the log metric, which must exist first.
    alert_opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[log_metric]))
    policies = [
        gcp.monitoring.AlertPolicy(
            f"{spec.service_name}-alert-{alert.key}",
            display_name=f"Loist {spec.environment}: {alert.title}",
            combiner="OR",
            conditions=_conditions(alert, ctx),
            severity=alert.severity,
            notification_channels=channels or None,
            documentation=_documentation(spec, alert),
            user_labels={"app": "loist", "environment": spec.environment, "runbook": alert.anchor},
            opts=alert_opts,
        )
        for alert in ALERTS
    ]
    dashboard = gcp.monitoring.Dashboard(
        f"{spec.service_name}-dashboard",
        dashboard_json=json.dumps(cloud_dashboard(spec.environment, cloud_scope(spec.service_name), names)),
        opts=opts,
    )
    return [log_metric, *ctx.uptime_checks, *ctx.slos.values(), *policies, dashboard]
