"""Turning telemetry on for one server process (``loist serve``), and off again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from loist.telemetry import tracing
from loist.telemetry.listener import Listener, start_listener

if TYPE_CHECKING:
    from loist.config import Settings


@dataclass
class Telemetry:
    """What :func:`start` turned on: the metrics listener (None: metrics off) and tracing."""

    listener: Listener | None
    tracing: bool

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self.tracing:
            tracing.flush()


def start(settings: Settings) -> Telemetry:
    """Tracing from the ``OTEL_*`` settings, then the metrics listener (``METRICS_PORT``, 0: off)."""
    traced = tracing.configure(settings)
    return Telemetry(start_listener(settings), traced)
