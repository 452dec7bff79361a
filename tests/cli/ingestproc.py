"""A real ``loist ingest --json`` process that a test holds between catalogue batches.

The process gets the ingest's test hooks (``loist.cli.testhooks``): small batches and chunks, and
a gate (the read end of a pipe the test keeps) that it waits at after each batch. So when the test
has read a batch's outcome lines, the process is parked before its next commit: a signal, a
``kill -9`` or a database outage then always lands with committed and uncommitted work present.
Nothing here sleeps for a guess: lines are read with a deadline, conditions are polled.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.polling import poll_until

LINE_TIMEOUT_S = 60.0
EXIT_TIMEOUT_S = 60.0

Lines = list[dict[str, Any]]


class IngestProcess:
    def __init__(self, proc: subprocess.Popen[bytes], gate: int, tmp: Path) -> None:
        self.proc = proc
        self.tmp = tmp  # its TMPDIR
        self.gate = gate  # write end: one byte lets the ingest past one batch; closing it opens the gate
        self.lines: Lines = []
        self._partial = b""  # stdout read but not yet a whole line (read unbuffered, so select() tells the truth)
        self._selector = selectors.DefaultSelector()
        assert proc.stdout is not None
        self._selector.register(proc.stdout, selectors.EVENT_READ)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def read_until(self, enough: Callable[[Lines], bool], what: str) -> Lines:
        """Read outcome lines until ``enough(lines so far)``; fail with stderr on exit or timeout."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + LINE_TIMEOUT_S
        while not enough(self.lines):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(timeout=remaining):
                self._fail(f"no {what} within {LINE_TIMEOUT_S}s")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                self._fail(f"the ingest ended before {what}")
            *whole, self._partial = (self._partial + chunk).split(b"\n")
            self.lines += [json.loads(line) for line in whole if line.strip()]
        return self.lines

    def release(self) -> None:
        """Let the ingest past the batch it is held after."""
        os.write(self.gate, b"g")

    def open_gate(self) -> None:
        """Let the ingest run to its end without holding again."""
        if self.gate >= 0:
            os.close(self.gate)
            self.gate = -1

    def finish(self) -> tuple[int, Lines, str]:
        """Wait for the exit; the return code, every outcome line, and stderr."""
        out, err = self.proc.communicate(timeout=EXIT_TIMEOUT_S)
        self.lines += [json.loads(line) for line in (self._partial + out).splitlines() if line.strip()]
        self._partial = b""
        return self.proc.returncode, self.lines, err.decode(errors="replace")

    def family(self) -> list[psutil.Process]:
        """The processes the ingest started (fork server, analysis workers, resource tracker)."""
        return psutil.Process(self.pid).children(recursive=True)

    def _fail(self, message: str) -> None:
        self.proc.kill()
        _, err = self.proc.communicate(timeout=EXIT_TIMEOUT_S)
        pytest.fail(f"{message} (exit {self.proc.returncode}); stderr:\n{err.decode(errors='replace')[-3000:]}")


@contextmanager
def ingest_process(sources: list[str], env: dict[str, str], *, sizes: str = "8x4") -> Iterator[IngestProcess]:
    """Start ``loist ingest --json --concurrency 2 SOURCES`` with the test hooks; kill it on the way out.

    Its temporary files (a bulk run's journals, which a killed run leaves; the fork server's
    socket) go in a folder of its own, ``.tmp``, removed on the way out. A short path, made here:
    a socket path must fit in 108 bytes, and pytest's temporary folders can be longer.
    """
    read_end, write_end = os.pipe()
    tmp = Path(tempfile.mkdtemp(prefix="loist-test-"))
    hooks = {"LOIST_TEST_INGEST_SIZES": sizes, "LOIST_TEST_INGEST_GATE_FD": str(read_end), "TMPDIR": str(tmp)}
    loist = Path(sys.executable).with_name("loist")
    proc = subprocess.Popen(  # noqa: S603 - our own console script
        [str(loist), "ingest", "--json", "--concurrency", "2", *sources],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        env=env | hooks, pass_fds=(read_end,),
        start_new_session=True,  # its own process group, as a command started from a shell has
    )
    os.close(read_end)
    running = IngestProcess(proc, write_end, tmp)
    try:
        yield running
    finally:
        running.open_gate()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=EXIT_TIMEOUT_S)
        running._selector.close()
        shutil.rmtree(tmp, ignore_errors=True)


def gone(processes: list[psutil.Process]) -> bool:
    """All of ``processes`` have exited (a zombie has exited; only its parent has not reaped it)."""
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


def wait_gone(processes: list[psutil.Process], timeout_s: float = 20.0) -> None:
    poll_until(lambda: gone(processes), timeout_s=timeout_s,
               what=f"processes {[p.pid for p in processes]} exited")


def by_status(lines: Lines) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        out.setdefault(line["status"], []).append(line)
    return out
