"""Several worker processes, one listener: the parent sums what its workers wrote (the client's
multi-process mode, ``PROMETHEUS_MULTIPROC_DIR``), and forgets the gauges of a worker that is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loist import __version__
from loist.config import Settings
from loist.telemetry.listener import MULTIPROC_ENV
from loist.telemetry.setup import Telemetry, start
from tests.support.served import free_port, scrape, value

# A web worker: builds its settings (which read PROMETHEUS_MULTIPROC_DIR), reports, and stays
# alive until its stdin closes.
WORKER = """
import sys
from loist.catalog.engine import build_engine
from loist.config import Settings
from loist.telemetry import metrics, setup
engine = build_engine("sqlite:///" + sys.argv[2], pool_size=5)
setup.start_worker(Settings(_env_file=None))
for _ in range(int(sys.argv[1])):
    metrics.http_request("/embed/{track_id}", "GET", 200, 0.02)
metrics.tool_call("search_library", "ok", 0.01)
metrics.active().pool_refresher.refresh()  # what its thread does every second
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def parent() -> Iterator[Telemetry]:
    assert MULTIPROC_ENV not in os.environ
    settings = Settings(_env_file=None, metrics_port=free_port())  # type: ignore[call-arg]
    telemetry = start(settings, workers=2)
    try:
        yield telemetry
    finally:
        telemetry.close()
        os.environ.pop(MULTIPROC_ENV, None)  # what start() set for the workers this parent started
    assert telemetry.workers_dir is not None and not telemetry.workers_dir.exists()


def _worker(requests: int, db: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, str(requests), str(db)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_the_parent_listener_sums_its_live_workers(parent: Telemetry, tmp_path: Path) -> None:
    assert parent.listener is not None and parent.workers_dir is not None
    assert os.environ[MULTIPROC_ENV] == str(parent.workers_dir)  # what the workers inherit
    workers = [_worker(2, tmp_path / "a.db"), _worker(3, tmp_path / "b.db")]
    try:
        samples = scrape(parent.listener.url)
        http = "loist_http_requests_total"
        assert value(samples, http, route="/embed/{track_id}", method="GET", status="200") == 5
        assert value(samples, "loist_http_request_duration_seconds_count", route="/embed/{track_id}", method="GET") == 5
        assert value(samples, "loist_mcp_tool_calls_total", tool="search_library", outcome="ok") == 2
        assert value(samples, "loist_db_pool_size") == 10  # summed over the live workers
        assert value(samples, "loist_build_info", version=__version__) == 1
        assert "process_resident_memory_bytes" in samples  # the parent's own
        workers[0].communicate("", timeout=60)  # one worker ends
        after = scrape(parent.listener.url)
        assert value(after, "loist_db_pool_size") == 5  # its gauges are forgotten
        assert value(after, http, route="/embed/{track_id}", method="GET", status="200") == 5  # its counts stay
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.communicate("", timeout=60)
