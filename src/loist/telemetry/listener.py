"""The metrics listener: Prometheus text on ``METRICS_HOST``:``METRICS_PORT``, apart from the public port.

It is ``prometheus_client``'s own small HTTP server on a daemon thread, so a scrape never waits
for the event loop and the public app has no ``/metrics`` route at all (a test checks the public
port answers 404). It binds to loopback by default: on Cloud Run the Managed Service for
Prometheus sidecar scrapes it over localhost, and locally Prometheus does.

Several web workers in one container: the parent calls :func:`prepare_workers` *before* it starts
them (it creates a fresh, empty folder and points ``PROMETHEUS_MULTIPROC_DIR`` at it, which the
workers inherit) and runs the one listener itself. Each worker then writes its samples to
memory-mapped files in that folder (the client's multi-process mode) and every scrape sums them:
counters and histograms add up, the pool gauges are summed over the workers alive at the scrape
(:class:`WorkerFiles` forgets the gauges of a worker that is gone). Process metrics are then the
parent's only.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loist.telemetry import metrics

if TYPE_CHECKING:
    from loist.config import Settings

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclass
class Listener:
    """A running metrics listener; :meth:`close` stops it."""

    host: str
    port: int
    server: Any

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_listener(settings: Settings) -> Listener | None:
    """Turn the metrics on and serve them on ``METRICS_HOST``:``METRICS_PORT`` (None when the port
    is 0). A port that cannot be bound is logged as an error and the server runs on without
    metrics: a scrape that fails is what the monitoring notices, an app that does not start is worse.
    """
    if not settings.metrics_port:
        return None
    from prometheus_client import start_http_server

    metrics.enable()
    try:
        server, _thread = start_http_server(settings.metrics_port, settings.metrics_host, registry=_registry(settings))
    except OSError as exc:
        log.error(
            "metrics are not served: cannot listen on %s:%d (%s); set METRICS_PORT to a free port, or 0",
            settings.metrics_host, settings.metrics_port, exc.strerror or exc,
        )
        return None
    return Listener(settings.metrics_host, server.server_address[1], server)


def _registry(settings: Settings) -> Any:
    """The default registry, or, with ``PROMETHEUS_MULTIPROC_DIR``, one that sums the workers' files."""
    from prometheus_client import REGISTRY

    if settings.prometheus_multiproc_dir is None:
        return REGISTRY
    from prometheus_client import CollectorRegistry, ProcessCollector

    registry = CollectorRegistry()
    registry.register(WorkerFiles(settings.prometheus_multiproc_dir))
    ProcessCollector(registry=registry)
    return registry


class WorkerFiles:
    """The workers' samples, summed; first the gauges of workers that are gone are forgotten (a
    worker that crashed and was replaced would otherwise count twice in ``livesum`` gauges). Their
    counters and histograms stay in the sums, so totals never go backwards."""

    def __init__(self, folder: Path) -> None:
        from prometheus_client.multiprocess import MultiProcessCollector

        self.folder = folder
        self.files = MultiProcessCollector(None, path=str(folder))

    def collect(self) -> Any:
        from prometheus_client import multiprocess

        for pid in {_pid_of(path) for path in self.folder.glob("gauge_live*_*.db")}:
            if pid is not None and not _alive(pid):
                multiprocess.mark_process_dead(pid, str(self.folder))
        return self.files.collect()


def _pid_of(path: Path) -> int | None:
    tail = path.stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process under a reused pid: treat as alive
        return True
    return True


def prepare_workers() -> Path:
    """In a parent about to start several worker processes: a fresh folder for their samples,
    named in ``PROMETHEUS_MULTIPROC_DIR`` so the workers inherit it. Call it before any worker
    starts (:func:`loist.telemetry.setup.start` with ``workers`` > 1 does)."""
    folder = Path(tempfile.mkdtemp(prefix="loist-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def remove_workers_dir(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
