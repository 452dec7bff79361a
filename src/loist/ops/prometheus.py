"""A local Prometheus (Debian's ``prometheus`` package) scraping ``loist serve``'s metrics listener.

``scripts/local-stack --observability`` starts one beside the stack, and the end-to-end tests
start one against a ``loist serve`` of their own. It runs in a folder of its own (configuration
and time-series data), on a loopback port, scraping only the targets it is given; stopping it
removes nothing (the caller owns the folder). The configuration is written as JSON, which is
YAML too. :func:`query` asks its HTTP API for an instant vector.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

JOB = "loist"
READY_TIMEOUT_S = 60.0
POLL_S = 0.05  # the interval of a bounded wait, not a guess at how long something takes


class PrometheusError(RuntimeError):
    """Prometheus is not installed, did not start, or its API answered an error."""


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout_s)


def config(targets: list[str], interval_s: float = 15.0) -> dict[str, Any]:
    """Scrape ``targets`` (``host:port`` of metrics listeners) every ``interval_s`` as job ``loist``."""
    interval = f"{max(1, round(interval_s))}s"
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [{"job_name": JOB, "metrics_path": "/metrics", "static_configs": [{"targets": targets}]}],
    }


def binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusError("prometheus is not installed (Debian: apt-get install prometheus)")
    return found


def start(folder: Path, targets: list[str], port: int, *, interval_s: float = 15.0) -> Prometheus:
    """Run Prometheus on ``127.0.0.1:port`` with its configuration and data under ``folder``; return
    once its ``/-/ready`` answers (or raise, with the end of its log)."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yml"
    config_file.write_text(json.dumps(config(targets, interval_s), indent=2))
    log = folder / "prometheus.log"
    cmd = [
        binary(), f"--config.file={config_file}", f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=folder)  # noqa: S603 - a fixed binary
    running = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        wait_for(lambda: _status(f"{running.url}/-/ready") == 200, "Prometheus ready", running)
    except BaseException:
        running.stop()
        raise
    return running


def wait_for(condition: Any, what: str, prometheus: Prometheus, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Check ``condition()`` every few milliseconds until true; raise if Prometheus died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if prometheus.proc.poll() is not None:
            raise PrometheusError(f"prometheus exited ({prometheus.proc.returncode}): {_tail(prometheus.log)}")
        if time.monotonic() > deadline:
            raise PrometheusError(f"not within {timeout_s:g} s: {what}")
        time.sleep(POLL_S)


def query(url: str, promql: str) -> list[dict[str, Any]]:
    """The result of an instant query: ``[{"metric": {labels}, "value": [time, "value"]}, ...]``."""
    response = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=5.0)
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise PrometheusError(f"query {promql!r} failed: {body.get('error', response.status_code)}")
    return list(body["data"]["result"])


def targets_up(url: str) -> bool:
    """Whether every active target's last scrape succeeded (and there is at least one)."""
    try:
        active = httpx.get(f"{url}/api/v1/targets", timeout=5.0).json()["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    return bool(active) and all(t.get("health") == "up" for t in active)


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return None


def _tail(log: Path, lines: int = 10) -> str:
    try:
        return " | ".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
