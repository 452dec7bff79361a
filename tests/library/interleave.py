"""Forcing one interleaving of concurrent ingests and deletes, deterministically.

:class:`Schedule` replaces the library's :class:`~loist.library.lifetime.Checkpoints`: a task (named
when the test starts it) can be held at a point until the test resumes it, or failed there. The
test waits for a task to *arrive* at a point (an event, never a sleep); :meth:`Schedule.until`
also returns when the task is blocked on a blob lock (``lock_blocked``) or has finished, so a
schedule that the library's locking forbids degrades to the order the locks impose instead of
hanging. ``GUARD_S`` only turns a stuck schedule into a failure; nothing is timed.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

from loist.library.lifetime import Checkpoints
from loist.library.service import Library

GUARD_S = 60  # a schedule that cannot finish fails the test instead of hanging it
ANY = "*"  # as a task name: whichever task gets there (work that runs in tasks it starts itself)


class Schedule(Checkpoints):
    def __init__(self) -> None:
        self._arrived: defaultdict[tuple[str, str], asyncio.Event] = defaultdict(asyncio.Event)
        self._gates: dict[tuple[str, str], asyncio.Event] = {}
        self._failures: dict[tuple[str, str], BaseException] = {}
        self.tasks: list[asyncio.Task[Any]] = []

    # --- what the library calls ------------------------------------------------------------------
    async def reached(self, point: str) -> None:
        current = asyncio.current_task()
        key = (current.get_name() if current is not None else "", point)
        self._arrived[key].set()
        self._arrived[(ANY, point)].set()
        if key in self._failures:
            raise self._failures.pop(key)
        gate = self._gates.get(key, self._gates.get((ANY, point)))
        if gate is not None:
            await gate.wait()

    # --- what the test calls ---------------------------------------------------------------------
    def start(self, name: str, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work, name=name)
        self.tasks.append(task)
        return task

    def hold(self, name: str, point: str) -> None:
        """Task ``name`` stops at ``point`` until :meth:`resume`."""
        self._gates[(name, point)] = asyncio.Event()

    def resume(self, name: str, point: str) -> None:
        self._gates[(name, point)].set()

    def fail(self, name: str, point: str, error: BaseException) -> None:
        """Task ``name`` raises ``error`` when it reaches ``point``."""
        self._failures[(name, point)] = error

    async def until(self, task: asyncio.Task[Any], *points: str, name: str | None = None) -> str:
        """Wait until ``task`` (or the task called ``name``, e.g. ANY) reaches one of ``points`` or
        ends; return the point, or ``"done"``."""
        name = task.get_name() if name is None else name
        waits = {asyncio.ensure_future(self._arrived[(name, point)].wait()): point for point in points}
        try:
            async with asyncio.timeout(GUARD_S):
                done, _ = await asyncio.wait([*waits, task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        for point in points:
            if self._arrived[(name, point)].is_set():
                return point
        assert task in done
        return "done"

    async def finish(self) -> dict[str, Any]:
        """Resume every held task and wait for all; each task's result (an exception is raised)."""
        for gate in self._gates.values():
            gate.set()
        async with asyncio.timeout(GUARD_S):
            results = await asyncio.gather(*self.tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return {task.get_name(): result for task, result in zip(self.tasks, results, strict=True)}


def install(library: Library) -> Schedule:
    schedule = Schedule()
    library.pipeline.checkpoints = schedule
    return schedule
