"""Dashboards and rules built from :mod:`loist_infra.signals`: Cloud Monitoring and local.

- :func:`cloud_dashboard`: the Cloud Monitoring dashboard JSON of one environment (PromQL for app
  metrics, time series filters for platform metrics); ``monitoring.py`` declares it.
- :func:`grafana_dashboard`, :func:`prometheus_rules`, :func:`prometheus_config`: the files of the
  ``observability`` compose profile, checked in under ``deploy/observability/`` and regenerated
  with ``python -m loist_infra.dashboards deploy/observability`` (run from ``deploy/infra``); a test
  checks the checked-in files equal what this module produces.

Dependency-free (standard library only), like ``signals``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from string import Template
from typing import Any

from loist_infra.envspec import METRICS_PORT
from loist_infra.signals import (
    ALERTS,
    LOCAL_JOB,
    LOCAL_SCOPE,
    OBJECTIVES,
    PANELS,
    Alert,
    CloudSeries,
    Objectives,
    Panel,
    promql,
)

#: Grafana's datasource uid, shared by the provisioned datasource and every panel.
DATASOURCE_UID = "prometheus"
#: Where the compose services see the files (mounted from deploy/observability/).
RULES_FILE = "alerts.yml"
DASHBOARD_FILE = "grafana/dashboards/loist.json"
#: Paths inside the containers (compose.yaml mounts deploy/observability/ at these).
PROMETHEUS_DIR = "/etc/prometheus"
GRAFANA_DASHBOARDS_DIR = "/var/lib/grafana/dashboards"
PROMETHEUS_URL = "http://prometheus:9090"
COLUMNS = 2  # panels per row, in both dashboards


def _cloud_aggregation(series: CloudSeries) -> dict[str, Any]:
    aggregation: dict[str, Any] = {
        "alignmentPeriod": f"{series.period_s}s",
        "perSeriesAligner": series.aligner,
        "crossSeriesReducer": series.reducer,
    }
    if series.group_by:
        aggregation["groupByFields"] = list(series.group_by)
    return aggregation


def _cloud_widget(panel: Panel, scope: str, names: dict[str, str]) -> dict[str, Any]:
    data_sets: list[dict[str, Any]] = [
        {
            "timeSeriesQuery": {"prometheusQuery": promql(query.expr, scope)},
            "plotType": "LINE",
        }
        for query in panel.queries
    ]
    data_sets += [
        {
            "timeSeriesQuery": {
                "timeSeriesFilter": {"filter": series.filter(**names), "aggregation": _cloud_aggregation(series)}
            },
            "plotType": "LINE",
        }
        for series in panel.cloud
    ]
    return {"title": panel.title, "xyChart": {"dataSets": data_sets, "yAxis": {"scale": "LINEAR"}}}


def cloud_dashboard(environment: str, scope: str, names: dict[str, str]) -> dict[str, Any]:
    """Every panel, app and platform. ``names`` fills the platform filters (service, database_id,
    log_metric)."""
    width, height = 48 // COLUMNS, 16
    tiles = [
        {
            "xPos": (i % COLUMNS) * width,
            "yPos": (i // COLUMNS) * height,
            "width": width,
            "height": height,
            "widget": _cloud_widget(panel, scope, names),
        }
        for i, panel in enumerate(PANELS)
    ]
    return {"displayName": f"Loist {environment}", "mosaicLayout": {"columns": 48, "tiles": tiles}}


def grafana_dashboard() -> dict[str, Any]:
    """The app panels as a Grafana dashboard over the local Prometheus."""
    app = [panel for panel in PANELS if panel.local]
    width, height = 24 // COLUMNS, 8
    panels = []
    for i, panel in enumerate(app):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": panel.title,
                "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                "gridPos": {"x": (i % COLUMNS) * width, "y": (i // COLUMNS) * height, "w": width, "h": height},
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "targets": [
                    {
                        "refId": chr(ord("A") + n),
                        "datasource": {"type": "prometheus", "uid": DATASOURCE_UID},
                        "expr": promql(query.expr, LOCAL_SCOPE),
                        "legendFormat": query.legend,
                    }
                    for n, query in enumerate(panel.queries)
                ],
            }
        )
    return {
        "uid": "loist",
        "title": "Loist",
        "tags": ["loist"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "panels": panels,
    }


def alert_threshold_values(objectives: Objectives) -> dict[str, float]:
    """The ``$name`` values an alert's PromQL may use."""
    return {
        "error_ratio": objectives.error_ratio,
        "latency_s": objectives.latency_s,
        "ingest_failure_ratio": objectives.ingest_failure_ratio,
        "search_p95_s": objectives.search_p95_ms / 1000,
    }


def alert_expr(alert: Alert, objectives: Objectives, scope: str) -> str:
    return Template(promql(alert.promql, scope)).substitute(alert_threshold_values(objectives))


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def rule_name(alert: Alert) -> str:
    """``server-errors`` -> ``LoistServerErrors`` (Prometheus alert names are CamelCase)."""
    return "Loist" + "".join(word.capitalize() for word in alert.key.split("-"))


def prometheus_rules(objectives: Objectives | None = None) -> dict[str, Any]:
    """The app-metric alerts as Prometheus alerting rules (local Prometheus; staging's numbers)."""
    objectives = objectives or OBJECTIVES["staging"]
    rules = [
        {
            "alert": rule_name(alert),
            "expr": alert_expr(alert, objectives, LOCAL_SCOPE),
            "for": _duration(alert.duration_s),
            "labels": {"severity": alert.severity.lower()},
            "annotations": {"summary": alert.title, "description": alert.summary,
                            "runbook": f"docs/operations.md#{alert.anchor}"},
        }
        for alert in ALERTS
        if alert.promql
    ]
    return {"groups": [{"name": "loist", "rules": rules}]}


def prometheus_config() -> dict[str, Any]:
    """Scrape the ``loist`` compose service's metrics listener; load the rules."""
    return {
        "global": {"scrape_interval": "15s", "evaluation_interval": "15s"},
        "rule_files": [f"{PROMETHEUS_DIR}/{RULES_FILE}"],
        "scrape_configs": [
            {"job_name": LOCAL_JOB, "static_configs": [{"targets": [f"loist:{METRICS_PORT}"]}]},
        ],
    }


HEADER = "# Generated by deploy/infra/loist_infra/dashboards.py from signals.py: do not edit by hand.\n"


def grafana_datasources() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {"name": "Prometheus", "type": "prometheus", "uid": DATASOURCE_UID, "access": "proxy",
             "url": PROMETHEUS_URL, "isDefault": True, "editable": False},
        ],
    }


def grafana_dashboard_provider() -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "providers": [
            {"name": "loist", "type": "file", "disableDeletion": True, "allowUiUpdates": False,
             "options": {"path": GRAFANA_DASHBOARDS_DIR}},
        ],
    }


def _yaml(data: dict[str, Any]) -> str:
    return HEADER + json.dumps(data, indent=2) + "\n"  # JSON is YAML


def local_files() -> dict[str, str]:
    """Relative path (under deploy/observability/) -> file text."""
    return {
        "prometheus.yml": _yaml(prometheus_config()),
        RULES_FILE: _yaml(prometheus_rules()),
        "grafana/provisioning/datasources/prometheus.yml": _yaml(grafana_datasources()),
        "grafana/provisioning/dashboards/loist.yml": _yaml(grafana_dashboard_provider()),
        DASHBOARD_FILE: json.dumps(grafana_dashboard(), indent=2) + "\n",
    }


def main(argv: list[str]) -> int:
    dest = Path(argv[0]) if argv else Path("deploy/observability")
    for relative, text in local_files().items():
        path = dest / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
