"""Monitoring as code, under Pulumi's mocks (the Google Cloud control plane is the only thing
mocked): uptime checks, alert policies, SLOs, the dashboard and the metrics sidecar of both stacks,
and the local observability files generated from the same definitions.

Whether the app really emits every metric these reference is checked against a live server in
tests/e2e/test_monitoring_metrics.py.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from loist_infra import dashboards
from loist_infra.envspec import (
    ENVIRONMENTS,
    GMP_SIDECAR_IMAGE,
    LIVE_PATH,
    METRICS_PATH,
    METRICS_PORT,
    READY_PATH,
    SIZING,
    default_run_url,
)
from loist_infra.monitoring import DEFAULT_MAX_CONNECTIONS, max_connections
from loist_infra.signals import ALERTS, BURN_RATES, GMP_DOMAIN, INTERACTIVE_ROUTES, OBJECTIVES, PANELS

from tests.deploy.conftest import ROOT, Stack, gcloud_problems
from tests.deploy.pulumi_harness import PROJECT_NUMBER

OBSERVABILITY = ROOT / "deploy" / "observability"
MONITORING_TYPES = ("gcp:monitoring/", "gcp:logging/metric:Metric")


@pytest.fixture(params=ENVIRONMENTS)
def stack(request: pytest.FixtureRequest, pulumi_stacks: dict[str, Stack]) -> Stack:
    return pulumi_stacks[request.param]


def _env(stack: Stack) -> str:
    return stack.config["loist:environment"]


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def doc_anchors(path: Path) -> set[str]:
    text = path.read_text()
    anchors = {github_slug(m.group(1)) for m in re.finditer(r"^#+\s+(.+)$", text, re.M)}
    return anchors | set(re.findall(r'<a id="([^"]+)"', text))


def policies(stack: Stack) -> list[dict[str, Any]]:
    return [p["inputs"] for p in stack.of_type("monitoring/alertPolicy:AlertPolicy")]


# --- uptime ---------------------------------------------------------------------------------------


def test_uptime_checks_target_the_services_own_url_and_health_paths(stack: Stack) -> None:
    service = stack.one("cloudrunv2/service:Service")["inputs"]
    # The host the mocks give the service's `uri` output, i.e. Cloud Run's URL of this service.
    own_host = urlsplit(default_run_url(service["name"], PROJECT_NUMBER, stack.config["gcp:region"])).hostname
    if service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER":
        # only the load balancer reaches the service: the checks use its domain (EMBED_BASE_URL's)
        own_host = urlsplit(stack.config["loist:embedBaseUrl"]).hostname
    checks = [c["inputs"] for c in stack.of_type("monitoring/uptimeCheckConfig:UptimeCheckConfig")]
    assert sorted(c["httpCheck"]["path"] for c in checks) == sorted([READY_PATH, LIVE_PATH])
    for check in checks:
        assert check["monitoredResource"] == {
            "type": "uptime_url",
            "labels": {"host": own_host, "project_id": stack.config["gcp:project"]},
        }
        http = check["httpCheck"]
        assert (http["port"], http["useSsl"], http["validateSsl"]) == (443, True, True)
        assert check["period"] == f"{OBJECTIVES[_env(stack)].uptime_period_s}s"
    # The container's own probes use the same paths.
    container = service["template"]["containers"][0]
    assert {container["startupProbe"]["httpGet"]["path"], container["livenessProbe"]["httpGet"]["path"]} == {
        READY_PATH,
        LIVE_PATH,
    }
    # The uptime alert watches exactly these checks.
    (uptime,) = [p for p in policies(stack) if p["userLabels"]["runbook"] == "alert-uptime"]
    ids = {c["id"].rsplit("/", 1)[-1] for c in stack.of_type("monitoring/uptimeCheckConfig:UptimeCheckConfig")}
    watched = {re.search(r'check_id="([^"]+)"', c["conditionThreshold"]["filter"]).group(1) for c in uptime["conditions"]}  # type: ignore[union-attr]
    assert watched == ids


# --- alerts and runbooks ----------------------------------------------------------------------


def test_alert_policies_each_link_an_existing_runbook_section(stack: Stack) -> None:
    found = policies(stack)
    assert len(found) >= 5 and len(found) == len(ALERTS)
    anchors = doc_anchors(ROOT / "docs" / "operations.md")
    for policy in found:
        anchor = policy["userLabels"]["runbook"]
        assert f"docs/operations.md#{anchor}" in policy["documentation"]["content"], policy["displayName"]
        assert anchor in anchors, f"docs/operations.md has no section {anchor!r}"
        assert policy["documentation"]["mimeType"] == "text/markdown"
        assert policy["conditions"], policy["displayName"]
        assert policy["displayName"].startswith(f"Loist {_env(stack)}: ")
    required = {"uptime", "server-errors", "latency", "ingest-failures", "search-latency", "sql-cpu", "sql-disk",
                "sql-connections", "instances", "error-logs"}
    assert required <= {p["userLabels"]["runbook"].removeprefix("alert-") for p in found}


def test_runbook_links_follow_the_repository_when_configured(pulumi_stacks: dict[str, Stack]) -> None:
    for policy in policies(pulumi_stacks["production-variant"]):
        (link,) = policy["documentation"]["links"]
        anchor = policy["userLabels"]["runbook"]
        assert link["url"] == f"https://github.com/example/loist/blob/main/docs/operations.md#{anchor}"
    assert all("links" not in p["documentation"] for p in policies(pulumi_stacks["production"]))


def test_notification_channels_come_from_the_stack_config(pulumi_stacks: dict[str, Stack]) -> None:
    variant = pulumi_stacks["production-variant"]
    channels = variant.of_type("monitoring/notificationChannel:NotificationChannel")
    assert sorted(c["inputs"]["labels"]["email_address"] for c in channels) == ["oncall@example.org", "ops@example.org"]
    assert all(c["inputs"]["type"] == "email" for c in channels)
    expected = sorted([*(c["id"] for c in channels), "projects/loist-production/notificationChannels/42"])
    for policy in policies(variant):
        assert sorted(policy["notificationChannels"]) == expected
    for name in ENVIRONMENTS:  # the checked-in stacks name no address
        assert not pulumi_stacks[name].of_type("notificationChannel")
        assert all(not p.get("notificationChannels") for p in policies(pulumi_stacks[name]))


def _threshold_of(stack: Stack, key: str) -> float:
    (policy,) = [p for p in policies(stack) if p["userLabels"]["runbook"] == f"alert-{key}"]
    (condition,) = policy["conditions"]
    return float(condition["conditionThreshold"]["thresholdValue"])


def test_capacity_alerts_follow_the_resources_they_watch(stack: Stack) -> None:
    sizing = SIZING[_env(stack)]  # type: ignore[index]
    near = OBJECTIVES[_env(stack)].near_max
    service = stack.one("cloudrunv2/service:Service")["inputs"]
    assert _threshold_of(stack, "instances") == pytest.approx(near * service["template"]["scaling"]["maxInstanceCount"])
    assert service["template"]["scaling"]["maxInstanceCount"] == sizing.max_instances
    instance = stack.one("sql/databaseInstance:DatabaseInstance")["inputs"]
    assert _threshold_of(stack, "sql-connections") == pytest.approx(near * max_connections(instance["settings"]))
    (sql,) = [p for p in policies(stack) if p["userLabels"]["runbook"] == "alert-sql-cpu"]
    database_id = f'{stack.config["gcp:project"]}:{instance["name"]}'
    assert f'resource.label.database_id="{database_id}"' in sql["conditions"][0]["conditionThreshold"]["filter"]


def test_max_connections_reads_the_flag_then_the_tier_default() -> None:
    assert max_connections({"tier": "db-g1-small"}) == 50
    assert max_connections({"tier": "db-custom-2-7680"}) == 400  # 7.5 GiB
    assert max_connections({"tier": "db-custom-1-3840"}) == 100
    flagged = {"tier": "db-g1-small", "databaseFlags": [{"name": "max_connections", "value": "120"}]}
    assert max_connections(flagged) == 120
    assert [floor for floor, _ in DEFAULT_MAX_CONNECTIONS] == sorted((f for f, _ in DEFAULT_MAX_CONNECTIONS), reverse=True)


def test_error_log_metric_counts_the_services_errors(stack: Stack) -> None:
    (metric,) = [m["inputs"] for m in stack.of_type("logging/metric:Metric")]
    service = stack.one("cloudrunv2/service:Service")["inputs"]["name"]
    assert f'resource.labels.service_name="{service}"' in metric["filter"] and "severity>=ERROR" in metric["filter"]
    (policy,) = [p for p in policies(stack) if p["userLabels"]["runbook"] == "alert-error-logs"]
    assert f'logging.googleapis.com/user/{metric["name"]}' in policy["conditions"][0]["conditionThreshold"]["filter"]


# --- SLOs -----------------------------------------------------------------------------------------


def test_slos_with_burn_rate_alerts(stack: Stack, pulumi_stacks: dict[str, Stack]) -> None:
    service = stack.one("monitoring/customService:CustomService")["inputs"]
    slos = {s["inputs"]["sloId"]: s for s in stack.of_type("monitoring/slo:Slo")}
    assert set(slos) == {"availability", "latency"}
    assert float(slos["availability"]["inputs"]["goal"]) == float(stack.config["loist:sloAvailability"])
    cut = slos["latency"]["inputs"]["requestBasedSli"]["distributionCut"]
    assert cut["range"]["max"] == pytest.approx(int(stack.config["loist:sloLatencyMs"]) / 1000)
    assert "prometheus.googleapis.com/loist_http_request_duration_seconds/histogram" in cut["distributionFilter"]
    assert INTERACTIVE_ROUTES in cut["distributionFilter"]
    ratio = slos["availability"]["inputs"]["requestBasedSli"]["goodTotalRatio"]
    run_service = stack.one("cloudrunv2/service:Service")["inputs"]["name"]
    assert f'resource.label.service_name="{run_service}"' in ratio["totalServiceFilter"]
    assert 'response_code_class="5xx"' in ratio["badServiceFilter"]
    for slo in slos.values():
        assert slo["inputs"]["service"] == service["serviceId"]
        burn = [
            c["conditionThreshold"]
            for p in policies(stack)
            for c in p["conditions"]
            if slo["id"] in c.get("conditionThreshold", {}).get("filter", "")
        ]
        assert [(b["thresholdValue"], b["filter"].startswith("select_slo_burn_rate(")) for b in burn] == [
            (rate.threshold, True) for rate in BURN_RATES
        ]
    variant = pulumi_stacks["production-variant"]
    (availability,) = [s for s in variant.of_type("monitoring/slo:Slo") if s["inputs"]["sloId"] == "availability"]
    assert float(availability["inputs"]["goal"]) == 0.999


# --- dashboard ------------------------------------------------------------------------------------


def test_dashboard_has_the_panels_the_operators_need(stack: Stack) -> None:
    board = json.loads(stack.one("monitoring/dashboard:Dashboard")["inputs"]["dashboardJson"])
    tiles = board["mosaicLayout"]["tiles"]
    titles = " | ".join(t["widget"]["title"] for t in tiles).lower()
    for topic in ("requests per second", "latency", "5xx", "instances", "cloud sql", "ingest", "search", "tool calls"):
        assert topic in titles, topic
    assert len(tiles) == len(PANELS)
    service = stack.one("cloudrunv2/service:Service")["inputs"]["name"]
    queries = [d["timeSeriesQuery"] for t in tiles for d in t["widget"]["xyChart"]["dataSets"]]
    for query in queries:
        if "prometheusQuery" in query:
            assert f'namespace="{service}"' in query["prometheusQuery"] and "@" not in query["prometheusQuery"]
        else:
            assert "{" not in query["timeSeriesFilter"]["filter"], "unfilled placeholder"
    for tile in tiles:  # no overlap on the 48-column grid
        assert tile["xPos"] + tile["width"] <= 48


def test_prometheus_metric_types_are_named_as_managed_prometheus_names_them(stack: Stack) -> None:
    text = json.dumps([r["inputs"] for r in stack.resources if r["type"].startswith(MONITORING_TYPES)])
    found = re.findall(rf"{re.escape(GMP_DOMAIN)}/([^\"\\/ ]+)/([a-z]+)", text)
    assert found
    for name, kind in found:
        assert name.startswith("loist_") and kind in {"counter", "gauge", "histogram"}, (name, kind)
        if kind == "histogram":
            assert not name.endswith(("_bucket", "_count", "_sum")), name
        if kind == "counter":
            assert name.endswith("_total"), name


# --- the metrics sidecar ----------------------------------------------------------------------


def test_service_runs_the_managed_prometheus_sidecar_on_the_metrics_port(stack: Stack) -> None:
    service = stack.one("cloudrunv2/service:Service")
    template = service["inputs"]["template"]
    app, sidecar = template["containers"]
    assert sidecar["image"] == GMP_SIDECAR_IMAGE and sidecar["dependsOns"] == [app["name"]]
    assert "ports" not in sidecar and "ports" in app
    (mount,) = sidecar["volumeMounts"]
    (volume,) = [v for v in template["volumes"] if v["name"] == mount["name"]]
    assert mount["mountPath"] == "/etc/rungmp" and volume["secret"]["items"] == [{"path": "config.yaml", "version": "latest"}]
    secret_id = volume["secret"]["secret"]
    assert secret_id == f"run-gmp-config-{_env(stack)}"
    config = yaml.safe_load(stack.secret_value(secret_id))
    assert config["kind"] == "RunMonitoring" and config["apiVersion"] == "monitoring.googleapis.com/v1beta"
    (endpoint,) = config["spec"]["endpoints"]
    # The sidecar scrapes the port the app listens on for metrics, not the public one.
    env = stack.runtime_env(service)
    assert endpoint["port"] == env["METRICS_PORT"] == str(METRICS_PORT) != env["PORT"]
    assert endpoint["path"] == METRICS_PATH
    assert env.get("METRICS_HOST", "127.0.0.1") == "127.0.0.1"  # loopback: only the sidecar reads it
    # The runtime account may read that secret and write metrics.
    member = f"serviceAccount:{template['serviceAccount']}"
    roles = {
        (g["type"].split(":")[-1], g["inputs"]["role"])
        for g in stack.resources
        if g["inputs"].get("member") == member
    }
    assert {("SecretIamMember", "roles/secretmanager.secretAccessor"), ("IAMMember", "roles/monitoring.metricWriter")} <= roles


# --- the local observability profile ----------------------------------------------------------


def test_checked_in_observability_files_are_what_the_generator_makes() -> None:
    for relative, text in dashboards.local_files().items():
        path = OBSERVABILITY / relative
        assert path.exists() and path.read_text() == text, (
            f"{path} is stale: run `python -m loist_infra.dashboards ../observability` in deploy/infra"
        )
    on_disk = {p.relative_to(OBSERVABILITY).as_posix() for p in OBSERVABILITY.rglob("*") if p.is_file()}
    assert on_disk == set(dashboards.local_files())


def test_grafana_dashboard_shows_every_app_panel() -> None:
    board = dashboards.grafana_dashboard()
    app = [p for p in PANELS if p.local]
    assert [p["title"] for p in board["panels"]] == [p.title for p in app]
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == dashboards.grafana_datasources()["datasources"][0]["uid"]
        assert all('job="loist"' in t["expr"] and "@" not in t["expr"] for t in panel["targets"])


def test_promql_of_panels_and_alerts_is_valid(tmp_path: Path) -> None:
    """promtool (Debian's prometheus package) parses every expression, panels as recording rules."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool (Debian package prometheus) is needed: scripts/bootstrap --test installs it"
    records = [
        {"record": f"loist:panel{i}:{n}", "expr": target["expr"]}
        for i, panel in enumerate(dashboards.grafana_dashboard()["panels"])
        for n, target in enumerate(panel["targets"])
    ]
    rules = dashboards.prometheus_rules()
    rules["groups"].append({"name": "panels", "rules": records})
    path = tmp_path / "rules.yml"
    path.write_text(json.dumps(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(records) + sum(1 for a in ALERTS if a.promql)} rules found" in done.stdout
    # The Prometheus config as compose mounts it (the rules path moved to where they are here).
    config = dashboards.prometheus_config()
    config["rule_files"] = [str(OBSERVABILITY / dashboards.RULES_FILE)]
    (tmp_path / "prometheus.yml").write_text(json.dumps(config))
    done = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_observability_profile_wires_the_generated_files() -> None:
    compose = shutil.which("docker-compose")
    assert compose
    done = subprocess.run([compose, "-f", "compose.yaml", "--profile", "observability", "config", "-q"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["observability"]
    assert "profiles" not in services["loist"]
    mounts = {v.split(":")[1]: v.split(":")[0] for s in ("prometheus", "grafana") for v in services[s]["volumes"]}
    assert mounts["/etc/prometheus/prometheus.yml"] == "./deploy/observability/prometheus.yml"
    assert mounts[f"{dashboards.PROMETHEUS_DIR}/{dashboards.RULES_FILE}"] == f"./deploy/observability/{dashboards.RULES_FILE}"
    assert mounts[dashboards.GRAFANA_DASHBOARDS_DIR] == "./deploy/observability/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/observability/grafana/provisioning"
    env = {k: str(v) for k, v in services["loist"]["environment"].items()}
    (target,) = dashboards.prometheus_config()["scrape_configs"][0]["static_configs"][0]["targets"]
    assert target == f"loist:{env['METRICS_PORT']}" and env["METRICS_PORT"] == str(METRICS_PORT)
    assert env["METRICS_HOST"] == "0.0.0.0"  # noqa: S104 - inside the compose network
    assert all("9464" not in str(p) for p in services["loist"]["ports"]), "metrics are never published"
    for name in ("prometheus", "grafana"):
        assert all(str(p).startswith("127.0.0.1:") for p in services[name]["ports"])
    assert dashboards.prometheus_config()["rule_files"] == [f"{dashboards.PROMETHEUS_DIR}/{dashboards.RULES_FILE}"]



def test_runbook_gcloud_lines_exist(gcloud_tree: dict[str, Any]) -> None:
    for doc in ("operations.md", "observability.md"):
        assert gcloud_problems((ROOT / "docs" / doc).read_text(), gcloud_tree) == [], doc


def test_observability_doc_lists_every_alert_with_its_runbook() -> None:
    text = (ROOT / "docs" / "observability.md").read_text()
    for alert in ALERTS:
        assert f"[{alert.title}](operations.md#{alert.anchor})" in text, alert.title


def test_local_dashboards_fit_the_local_stack_prometheus_too() -> None:
    """scripts/local-stack --observability runs Debian's Prometheus with its own config: the same job
    name, so the generated dashboard and rules select its series as well."""
    from loist_infra.signals import LOCAL_JOB

    from loist.ops import prometheus

    assert prometheus.JOB == LOCAL_JOB
    assert prometheus.config(["x:1"])["scrape_configs"][0]["metrics_path"] == METRICS_PATH
