"""The cross-check: every app metric the monitoring references is one a real ``loist serve`` emits.

What is referenced is taken from what the Pulumi program declares for both stacks (alert policies,
SLOs, the dashboard: every resource under ``gcp:monitoring/``), plus the generated local files
(Grafana dashboard, Prometheus rules); what is emitted is taken from a scrape of the metrics
listener of a real ``loist serve`` after traffic (an ingest, a search, an embed page, a
NOT_FOUND, a 404). Nothing is typed twice: a renamed family, label or route template on either
side fails here. The uptime checks' paths are fetched from the same server.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from loist_infra.dashboards import grafana_dashboard, local_files, prometheus_rules
from loist_infra.envspec import METRICS_PATH
from loist_infra.signals import GMP_DOMAIN, INTERACTIVE_ROUTES, SERVER_ERROR
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client.parser import text_string_to_metric_families

from loist.ops import prometheus
from tests.deploy.conftest import Stack
from tests.support.audio import AudioFactory
from tests.support.httpserver import LoopbackServer
from tests.support.served import free_port, serving

pytestmark = pytest.mark.e2e

METRIC = re.compile(r"\b(loist_[a-z][a-z0-9_]*)")
SELECTOR = re.compile(r"\b(loist_[a-z][a-z0-9_]*)\{([^}]*)\}")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"')
BY = re.compile(r"\bby \(([^)]*)\)")
SCOPE_LABELS = {"namespace", "job"}  # set by the scraper (sidecar / local Prometheus), not the app


def _strings(value: Any) -> list[str]:
    """Every string inside a resource's inputs; JSON documents (the dashboard) opened up too."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, str) and value.startswith("{"):
        try:
            return _strings(json.loads(value))
        except ValueError:
            return [value]
    return [value] if isinstance(value, str) else []


def referenced(stacks: dict[str, Stack]) -> str:
    """Everything the monitoring declares, one string a line: the inputs of every monitoring and
    log-metric resource of every stack, and the generated local files (without their comments)."""
    declared = [
        r["inputs"]
        for stack in stacks.values()
        for r in stack.resources
        if r["type"].startswith(("gcp:monitoring/", "gcp:logging/"))
    ]
    files = [line for text in local_files().values() for line in text.splitlines() if not line.startswith("#")]
    return "\n".join(_strings(declared) + files)


async def _traffic(base: str, audio_url: str) -> str:
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0))
    async with Client(streamable_http_client(f"{base}/mcp", http_client=http)) as client:
        done = await client.call_tool("process_audio_complete", {"source": {"type": "http_url", "url": audio_url}})
        assert not done.is_error, done
        track_id = str(done.structured_content["track"]["id"])
        assert not (await client.call_tool("search_library", {"query": "Wombat"})).is_error
        missing = await client.call_tool("get_audio_metadata", {"audioId": str(uuid.uuid4())})
        assert missing.is_error and missing.structured_content["error"]["code"] == "NOT_FOUND"
    return track_id


def _scrape(url: str) -> tuple[dict[str, str], dict[str, set[str]], dict[str, set[str]]]:
    """(family kinds by exposed name, label names by sample or family name, label values by label)."""
    text = httpx.get(url, timeout=5).text
    kinds: dict[str, str] = {}
    labels: dict[str, set[str]] = {}
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        exposed = f"{family.name}_total" if family.type == "counter" else family.name
        kinds[exposed] = family.type
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            # A histogram is referenced by its family name too (Managed Prometheus metric types).
            labels.setdefault(exposed, set()).update(set(sample.labels) - {"le"})
            for key, value in sample.labels.items():
                values.setdefault(key, set()).add(value)
    return kinds, labels, values


@pytest.fixture(scope="module")
def scraped(
    tmp_path_factory: pytest.TempPathFactory, loopback_server: LoopbackServer, audio_factory: AudioFactory,
    pulumi_stacks: dict[str, Stack],
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("monitoring-scrape")
    audio_url = loopback_server.file("/monitoring-wombat.mp3", audio_factory("mp3", tags={"title": "Wombat"}).read_bytes())
    paths = {c["inputs"]["httpCheck"]["path"] for s in pulumi_stacks.values() for c in s.of_type("UptimeCheckConfig")}
    env = {"LOIST_DATA_DIR": str(Path(tmp) / "data"), "ALLOW_PRIVATE_URLS": "true"}
    with serving(tmp, env) as served:
        assert served.metrics.endswith(METRICS_PATH), "the sidecar scrapes this path"
        target = served.metrics.removeprefix("http://").removesuffix(METRICS_PATH)
        running = prometheus.start(Path(tmp) / "prometheus", [target], free_port(), interval_s=1)
        try:
            track_id = asyncio.run(_traffic(served.base, audio_url))
            with httpx.Client(base_url=served.base, timeout=10) as web:
                assert web.get(f"/embed/{track_id}").status_code == 200
                assert web.get("/no-such-page").status_code == 404
                uptime = {path: web.get(path).status_code for path in paths}
            kinds, labels, values = _scrape(served.metrics)
            evaluated = _evaluate(running)
        finally:
            running.stop()
    return {"kinds": kinds, "labels": labels, "values": values, "uptime": uptime, "evaluated": evaluated}


def _evaluate(running: prometheus.Prometheus) -> dict[str, int]:
    """Every Grafana panel and local alert expression, asked of a real Prometheus that scraped the
    server after the traffic: expression -> number of series (a bad expression raises)."""
    # rate() needs two samples with the traffic in them: wait for the ingest to be scraped twice.
    seen = 'count_over_time(loist_ingest_total{job="loist", outcome="ok"}[5m])'
    prometheus.wait_for(
        lambda: any(float(r["value"][1]) >= 2 for r in prometheus.query(running.url, seen)),
        "two scrapes after the traffic", running,
    )
    panels = [t["expr"] for p in grafana_dashboard()["panels"] for t in p["targets"]]
    alerts = [r["expr"] for g in prometheus_rules()["groups"] for r in g["rules"]]
    return {expr: len(prometheus.query(running.url, expr)) for expr in [*panels, *alerts]}


def test_uptime_check_paths_answer_200(scraped: dict[str, Any]) -> None:
    assert scraped["uptime"] and set(scraped["uptime"].values()) == {200}, scraped["uptime"]


def test_every_referenced_loist_metric_is_emitted(scraped: dict[str, Any], pulumi_stacks: dict[str, Stack]) -> None:
    text = referenced(pulumi_stacks)
    names = set(METRIC.findall(text))
    assert len(names) >= 10, names  # the monitoring really does reference the app's families
    missing = sorted(names - set(scraped["labels"]))
    assert not missing, f"referenced but not emitted by loist serve: {missing}"


def test_managed_prometheus_types_match_the_emitted_kinds(
    scraped: dict[str, Any], pulumi_stacks: dict[str, Stack]
) -> None:
    found = re.findall(rf"{re.escape(GMP_DOMAIN)}/(loist_[a-z0-9_]+)/([a-z]+)", referenced(pulumi_stacks))
    assert found
    for name, kind in found:
        assert scraped["kinds"].get(name) == kind, f"{name} is a {scraped['kinds'].get(name)}, not a {kind}"


def test_referenced_labels_exist_on_their_metrics(scraped: dict[str, Any], pulumi_stacks: dict[str, Stack]) -> None:
    text = referenced(pulumi_stacks)
    labels: dict[str, set[str]] = scraped["labels"]
    selectors = SELECTOR.findall(text)
    assert selectors
    for name, matchers in selectors:
        used = set(MATCHER.findall(matchers)) - SCOPE_LABELS
        assert used <= labels[name], f"{name} has no label(s) {used - labels[name]}"
    every = set().union(*(labels[n] for n in labels if n.startswith("loist_")))
    for group in BY.findall(text):
        by = {label.strip() for label in group.split(",")}
        assert by <= every, f"grouping by labels the app never sets: {by - every}"
    # GMP filters: metric.label.<name> on a loist_ metric.
    for name, label in re.findall(rf"{re.escape(GMP_DOMAIN)}/(loist_[a-z0-9_]+)/[a-z]+\".*?metric\.label\.(\w+)", text):
        assert label in labels[name], (name, label)


def test_every_panel_shows_data_from_a_real_prometheus(scraped: dict[str, Any]) -> None:
    """The Grafana panels, evaluated by Prometheus after real traffic: each returns series, except
    the error shares (no request failed with a 5xx, no ingest failed: their numerator is empty)."""
    panels = {t["expr"]: p["title"] for p in grafana_dashboard()["panels"] for t in p["targets"]}
    empty = sorted(panels[e] for e, n in scraped["evaluated"].items() if e in panels and n == 0)
    assert empty == ["Ingest failure share", "Server errors (share of requests answered 5xx)"], empty


def test_label_values_have_the_form_the_matchers_assume(scraped: dict[str, Any]) -> None:
    values: dict[str, set[str]] = scraped["values"]
    assert values["status"] and all(re.fullmatch(r"\d{3}", s) for s in values["status"])
    assert "404" in values["status"] and not any(re.fullmatch(SERVER_ERROR, s) for s in values["status"])
    interactive = {r for r in values["route"] if re.fullmatch(INTERACTIVE_ROUTES, r)}
    assert "/embed/{track_id}" in interactive and {"/health/live", "/health/ready"} & interactive
    assert "/mcp" in values["route"] and "/mcp" not in interactive  # tool calls are not "interactive"
    assert "ok" in values["outcome"] and "NOT_FOUND" in values["outcome"]
