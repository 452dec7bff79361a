"""Waiting for something another process or thread brings about: check it in a bounded loop.

A fixed sleep guesses how long something takes; these check the condition itself every few
milliseconds and fail, naming what was awaited, when the deadline passes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

POLL_INTERVAL_S = 0.02  # the interval of a bounded loop, not a wait for a guess


def poll_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s}s: {what}")
        time.sleep(POLL_INTERVAL_S)


async def apoll_until(condition: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """:func:`poll_until` inside an event loop; ``condition`` runs in a thread (it may block)."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(POLL_INTERVAL_S)
