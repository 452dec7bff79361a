"""A real Prometheus (Debian's package) scrapes a running ``loist serve``; after traffic its HTTP API
has the app's series with the counts that traffic made."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from loist import __version__
from loist.ops import prometheus
from tests.support.served import Served, free_port, serving

pytestmark = pytest.mark.e2e

EMBED_404S = 3


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[Served, prometheus.Prometheus]]:
    if shutil.which("prometheus") is None:
        pytest.fail("prometheus is not installed: scripts/bootstrap --test installs it", pytrace=False)
    with serving(tmp_path, {"LOIST_DATA_DIR": str(tmp_path / "data")}) as served:
        target = served.metrics.removeprefix("http://").removesuffix("/metrics")
        running = prometheus.start(tmp_path / "prometheus", [target], free_port(), interval_s=1)
        try:
            yield served, running
        finally:
            running.stop()


def _value(url: str, promql: str) -> float | None:
    result = prometheus.query(url, promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_served_metrics(scraped: tuple[Served, prometheus.Prometheus]) -> None:
    served, running = scraped
    prometheus.wait_for(lambda: prometheus.targets_up(running.url), "the loist target is up", running)
    with httpx.Client(base_url=served.base, timeout=10) as http:
        for n in range(EMBED_404S):
            assert http.get(f"/embed/00000000-0000-4000-8000-00000000000{n}").status_code == 404
    # the next scrapes see them: wait (bounded, polling the API) for the counter to reach the count
    series = 'loist_http_requests_total{job="loist",route="/embed/{track_id}",method="GET",status="404"}'
    prometheus.wait_for(lambda: _value(running.url, series) == EMBED_404S, f"{series} == {EMBED_404S}", running)
    build = prometheus.query(running.url, "loist_build_info")
    assert [r["metric"]["version"] for r in build] == [__version__]
    assert _value(running.url, 'up{job="loist"}') == 1
    assert _value(running.url, "sum(loist_http_request_duration_seconds_count{route=\"/embed/{track_id}\"})") == EMBED_404S
    assert prometheus.query(running.url, "process_resident_memory_bytes{job=\"loist\"}")
