"""``loist serve --transport http`` as a real child process, with its metrics listener on a free port.

:func:`serving` starts it on two free loopback ports (public and metrics) against the given
environment, waits (bounded, by polling ``/health/live``) until it answers, and stops it with
SIGINT at the end, killing it only if it does not stop in time. :func:`scrape` reads the metrics
listener with the client library's own parser.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.liveserver import interrupt, wait_until_live

Labels = tuple[tuple[str, str], ...]


def free_port() -> int:
    """A free loopback port (released just before the child binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Served:
    base: str
    metrics: str
    proc: subprocess.Popen[str]
    stderr: list[str] = field(default_factory=list)


@contextmanager
def serving(cwd: Path, env: dict[str, str]) -> Iterator[Served]:
    port, metrics_port = free_port(), free_port()
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("LOIST_", "DATABASE_", "DB_", "GCS_", "STORAGE_", "OTEL_", "METRICS_"))}
    clean.update({"EMBED_BASE_URL": f"http://127.0.0.1:{port}", "METRICS_HOST": "127.0.0.1",
                  "METRICS_PORT": str(metrics_port), "LOG_LEVEL": "WARNING", **env})
    proc = subprocess.Popen(
        [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd, env=clean, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    served = Served(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{metrics_port}/metrics", proc)
    try:
        wait_until_live(served.base, is_alive=lambda: proc.poll() is None)
        yield served
    finally:
        _, err = interrupt(proc)
        served.stderr.extend(err.splitlines())


def scrape(url: str) -> dict[str, dict[Labels, float]]:
    """Every sample of a scrape: sample name -> {sorted label pairs: value}."""
    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    samples: dict[str, dict[Labels, float]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict[str, dict[Labels, float]], name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist)."""
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)
