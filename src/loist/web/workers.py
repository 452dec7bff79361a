"""Several server processes on one port: ``loist serve`` with ``WEB_WORKERS`` > 1.

One Python process runs one event loop on one core. Where the host has more (Cloud Run with 2+
vCPU, a laptop), :func:`serve_workers` starts ``WEB_WORKERS``
processes (``spawn``: a fresh interpreter each, nothing inherited but the settings and the socket `loist serve` bound);
the kernel spreads new connections among them. Each worker builds its own app, library, database
pool and admission bounds (docs/capacity.md counts the connections).

Before the workers start, `loist serve` opens the library once and closes it again: on the embedded
SQLite catalogue that runs the migrations, so the workers never race each other's; on PostgreSQL it
checks that the schema is current and fails fast, once, if it is not. SQLite stays correct with
several processes (WAL readers in parallel; each write takes the file's lock up front and retries
within ``SQLITE_WRITE_TIMEOUT_S``).

The parent only supervises: SIGINT/SIGTERM to it become SIGTERM to every worker (each shuts down
gracefully, finishing its requests; workers run in their own process group, so a Ctrl-C reaches
the parent only, and die with it even when it is killed with SIGKILL), and a worker that dies is replaced, unless it died within
:data:`CRASH_WINDOW_S` of starting, which stops the server (a worker that cannot start would
otherwise restart forever).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from loist.config import Settings

log = logging.getLogger(__name__)

CRASH_WINDOW_S = 5.0
STOP_GRACE_S = 30.0


#: How a worker configures uvicorn for the app: ``loist.serve.uvicorn_config`` (passed in, pickled
#: by name, so this module does not import ``serve``, which imports it).
ConfigFactory = Callable[..., Any]


def _worker(settings: Settings, sock: socket.socket, make_config: ConfigFactory, parent: int) -> None:
    """One worker process: the app on the shared socket until SIGINT/SIGTERM."""
    import uvicorn

    from loist.library.bulk import die_with_parent
    from loist.logs import configure_logging
    from loist.telemetry.setup import start_worker
    from loist.web.app import create_app

    os.setpgid(0, 0)  # Ctrl-C at a terminal reaches the parent only; it stops the workers
    if die_with_parent() and os.getppid() != parent:  # even a kill -9 of the parent ends the workers
        return  # the parent died before the death signal was armed
    configure_logging(settings)
    start_worker(settings)  # report into the parent's metrics folder, trace on its own
    server = uvicorn.Server(make_config(create_app(settings), settings))
    server.run(sockets=[sock])


class Supervisor:
    """Starts the workers, passes signals on, replaces a worker that dies."""

    def __init__(self, settings: Settings, sock: socket.socket, make_config: ConfigFactory) -> None:
        self.settings = settings
        self.sock = sock
        self.make_config = make_config
        self.context = multiprocessing.get_context("spawn")
        self.workers: dict[int, tuple[BaseProcess, float]] = {}
        self.stopping: int | None = None

    def start_one(self, slot: int) -> None:
        process = self.context.Process(target=_worker, args=(self.settings, self.sock, self.make_config, os.getpid()), name=f"loist-worker-{slot}")
        process.start()
        self.workers[slot] = (process, time.monotonic())

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = signum
        for process, _ in self.workers.values():
            if process.pid is not None and process.exitcode is None:
                process.terminate()  # SIGTERM: uvicorn's graceful stop

    def run(self) -> int:
        """Run until a signal stops the workers; the exit status (0 after a signal)."""
        previous = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for slot in range(self.settings.web_workers):
                self.start_one(slot)
            while self.stopping is None:
                wait([process.sentinel for process, _ in self.workers.values()], timeout=1.0)
                if self.stopping is None and not self.replace_dead():
                    self.on_signal(signal.SIGTERM, None)
                    return 1
            return 0
        finally:
            self.join()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def replace_dead(self) -> bool:
        """Start a new worker for each dead one; False when one died right after starting."""
        for slot, (process, started) in list(self.workers.items()):
            if process.exitcode is None:
                continue
            if time.monotonic() - started < CRASH_WINDOW_S:
                log.error("server worker %d exited with %s right after starting; stopping", slot, process.exitcode)
                return False
            log.warning("server worker %d exited with %s; starting a new one", slot, process.exitcode)
            self.start_one(slot)
        return True

    def join(self) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        for process, _ in self.workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                process.kill()
                process.join()


def serve_workers(settings: Settings, sock: socket.socket, make_config: ConfigFactory) -> int:
    """Serve with ``settings.web_workers`` processes on ``sock`` (bound by ``loist.serve.bind``, after
    ``loist.serve.check_library`` opened the library once: migrations never race); returns the exit status.

    ``make_config(app, settings)``: the uvicorn configuration each worker runs its app with."""
    try:
        return Supervisor(settings, sock, make_config).run()
    finally:
        sock.close()
