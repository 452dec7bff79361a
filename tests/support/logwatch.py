"""Wait for a log record from any thread (e.g. a uvicorn server thread) instead of sleeping.

    with watching_logs(lambda r: r.name == "loist.web.mcp_route") as logs:
        ...                                  # make the server log something
        assert logs.seen.wait(20)            # a bound, so a server that never logs fails the test
    logs.records                             # every record seen meanwhile (root at INFO)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class LogWaiter(logging.Handler):
    """Collects records (any thread) and sets ``seen`` when one matches ``until``."""

    def __init__(self, until: Callable[[logging.LogRecord], bool]) -> None:
        super().__init__(logging.DEBUG)
        self.until, self.records, self.seen = until, [], threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if self.until(record):
            self.seen.set()


@contextmanager
def watching_logs(until: Callable[[logging.LogRecord], bool]) -> Iterator[LogWaiter]:
    waiter, root = LogWaiter(until), logging.getLogger()
    level = root.level
    root.addHandler(waiter)
    root.setLevel(logging.INFO)
    try:
        yield waiter
    finally:
        root.removeHandler(waiter)
        root.setLevel(level)
