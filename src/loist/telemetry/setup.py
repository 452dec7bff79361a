"""Turning telemetry on for one server process (``loist serve``), and off again.

One process (the default): :func:`start` turns tracing on (if ``OTEL_*`` asks) and serves the
metrics of this process on ``METRICS_HOST``:``METRICS_PORT``.

Several web worker processes (the parent of ``workers`` > 1 uvicorn workers): the parent calls
:func:`start` with ``workers`` *before* it starts them; it prepares the shared samples folder
(``PROMETHEUS_MULTIPROC_DIR``, inherited by the workers) and serves their sums. Each worker calls
:func:`start_worker` with its own settings (built after the parent set that variable) before it
builds the app: it reports into the folder and traces on its own. The parent's :meth:`Telemetry.close`
removes the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loist.telemetry import metrics, tracing
from loist.telemetry.listener import Listener, prepare_workers, remove_workers_dir, start_listener

if TYPE_CHECKING:
    from loist.config import Settings


@dataclass
class Telemetry:
    """What :func:`start` turned on: the metrics listener (None: metrics off), tracing, and the
    workers' samples folder (several workers only)."""

    listener: Listener | None
    tracing: bool
    workers_dir: Path | None = None

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self.tracing:
            tracing.flush()
        if self.workers_dir is not None:
            remove_workers_dir(self.workers_dir)


def start(settings: Settings, *, workers: int = 1) -> Telemetry:
    """Tracing from the ``OTEL_*`` settings, then the metrics listener (``METRICS_PORT``, 0: off).

    ``workers`` > 1: this process is the parent of that many web workers (see the module docstring).
    """
    folder = None
    if workers > 1 and settings.metrics_port:
        folder = prepare_workers()
        settings = settings.model_copy(update={"prometheus_multiproc_dir": folder})
    traced = tracing.configure(settings)
    return Telemetry(start_listener(settings), traced, folder)


def start_worker(settings: Settings) -> bool:
    """In one of several web workers: report metrics into the parent's folder (when it made one)
    and trace. Returns whether tracing is on."""
    if settings.metrics_port and settings.prometheus_multiproc_dir is not None:
        metrics.enable(shared=True)
    return tracing.configure(settings)
