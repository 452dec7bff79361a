"""SIGINT and SIGTERM during ``loist ingest``: the first asks the work to stop, a second aborts.

The first signal sets :attr:`Interruption.stop`; the bulk ingest then takes no new work, deletes
the blobs of everything not committed, reports every input it did not ingest as ``INTERRUPTED``,
and the command exits with ``128 + the signal's number`` (130 for SIGINT, 143 for SIGTERM: the
shell's convention, and ``errors.EXIT_CODE[INTERRUPTED]`` is 130). A second signal of either kind
ends the process at once by that signal's default action, without cleaning up
(docs/operations.md says what that leaves behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

from loist.cli import render

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interruption:
    """The stop request of one command, fed by SIGINT and SIGTERM while :meth:`handled` is active."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.signum: int | None = None

    @property
    def exit_code(self) -> int | None:
        """``128 + signal number`` once a signal stopped the work, else None."""
        return None if self.signum is None else 128 + self.signum

    @contextlib.contextmanager
    def handled(self) -> Iterator[Interruption]:
        """Route SIGINT and SIGTERM to :meth:`received` inside the running event loop, then restore them.

        Where the loop cannot take signals (not the main thread, or Windows) nothing is installed
        and the signals keep their default behaviour.
        """
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        try:
            for sig in SIGNALS:
                try:
                    loop.add_signal_handler(sig, self.received, sig)
                except (NotImplementedError, RuntimeError, ValueError):
                    break
                installed.append(sig)
            yield self
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def received(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
            self.stop.set()
            name = signal.Signals(signum).name
            render.note(f"{name}: stopping; work not yet committed is being removed (signal again to abort at once)")
            return
        signal.signal(signum, signal.SIG_DFL)  # a second signal: die by it, now
        os.kill(os.getpid(), signum)
