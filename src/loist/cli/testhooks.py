"""Test hooks of ``loist ingest``, read from the environment only when set: how the tests of
interruption and database failure hold a real ``loist ingest`` process at a known point.

- ``LOIST_TEST_INGEST_SIZES=<batch>x<chunk>``: the catalogue batch and analysis chunk sizes
  (256 and 32 otherwise), so a few dozen files make several batches.
- ``LOIST_TEST_INGEST_GATE_FD=<fd>``: an inherited file descriptor (the read end of a pipe the test
  holds). After each catalogue batch the ingest waits for one byte on it, or for a stop signal;
  end of file opens the gate for the rest of the run.

Neither changes what the ingest does, only its pace and sizes.
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING

from loist.errors import InvalidArgument

if TYPE_CHECKING:
    from loist.library.pipeline import BulkControl

SIZES = "LOIST_TEST_INGEST_SIZES"
GATE_FD = "LOIST_TEST_INGEST_GATE_FD"


def bulk_control(stop: asyncio.Event) -> BulkControl:
    """The ingest's :class:`BulkControl`: ``stop``, plus the hooks the environment sets."""
    from loist.library.pipeline import BulkControl

    control = BulkControl(stop=stop)
    if sizes := os.environ.get(SIZES):
        try:
            control.batch_size, control.chunk_size = (int(part) for part in sizes.split("x"))
        except ValueError:
            raise InvalidArgument(f"{SIZES} must look like 8x4 (batch x chunk), not {sizes!r}") from None
    if fd := os.environ.get(GATE_FD):
        control.after_batch = _Gate(int(fd), stop).wait
    return control


class _Gate:
    def __init__(self, fd: int, stop: asyncio.Event) -> None:
        self.fd = fd
        self.stop = stop
        self.open = False

    async def wait(self, batch: int) -> None:
        """Hold the run after ``batch`` until a byte arrives on the descriptor or the run is stopped."""
        if self.open:
            return
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(self.fd, lambda: readable.done() or readable.set_result(None))
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({readable, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            loop.remove_reader(self.fd)
            stopped.cancel()
        if readable.done() and not os.read(self.fd, 1):
            self.open = True
