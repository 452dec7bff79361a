"""Admission control: past saturation, refuse expensive work quickly instead of queueing everything.

One server process runs every request on one event loop. Under a mix of MCP searches, streams and
pages, an unbounded server lets the expensive requests fill the loop's run queue, and then *every*
request waits behind them, the cheapest page included (measured: past ~150 requests/s on two cores
the embed page's p95 went from milliseconds to 5-11 s, docs/benchmarks.md). So work is sorted by
kind, each kind has its own bound, and the cheap pages are never held back by the others:

============  ====================================  ==========================================
kind          requests                              bound (setting)
============  ====================================  ==========================================
``mcp``       ``POST /mcp`` (tool calls, resources)  ``MAX_CONCURRENT_MCP``
``stream``    ``/audio/{id}/stream``                 ``MAX_CONCURRENT_STREAMS``
``page``      embed, oEmbed, thumbnails, static      only the total
``health``    ``/health/*``                          never refused (probes must see the truth)
============  ====================================  ==========================================

and all of them but health together are bounded by ``MAX_CONCURRENT_REQUESTS``. A request of a
bounded kind that finds its kind full waits up to ``ADMISSION_WAIT_MS`` for a slot (slots are
handed over in arrival order), then is *shed*: ``503`` with ``Retry-After`` and the body
``{"error": {"code": "OVERLOADED", ...}}``. It is shed at once, without waiting, when the requests
already waiting would not all get a slot within ``ADMISSION_WAIT_MS`` at the pace slots have been
freeing (:class:`Gate`), so past saturation the excess is answered in milliseconds rather than after
the wait. A request past the total is shed at once. A shed answer costs well under a millisecond,
so the loop keeps its time for the work it admitted.

Inside MCP, the tools that start long work have their own bound too (:class:`ToolBounds`, used by
:class:`loist.mcp.server.LoistMCPServer`): an ingest past ``MAX_CONCURRENT_INGESTS`` is an
``isError`` result with the code ``OVERLOADED`` and ``details.retry_after_s``, on every transport.

Bounds are per process (``WEB_WORKERS`` processes each have their own) and per event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from loist.config import Settings
from loist.errors import Overloaded
from loist.web.errors import error_json

log = logging.getLogger(__name__)

MCP_PATH = "/mcp"
KINDS = ("mcp", "stream", "page")


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    total: int  # MAX_CONCURRENT_REQUESTS; 0 turns admission control off
    mcp: int
    streams: int
    ingests: int
    wait_s: float
    retry_after_s: int

    @classmethod
    def from_settings(cls, settings: Settings) -> AdmissionLimits:
        return cls(
            total=settings.max_concurrent_requests,
            mcp=settings.max_concurrent_mcp,
            streams=settings.max_concurrent_streams,
            ingests=settings.max_concurrent_ingests,
            wait_s=settings.admission_wait_ms / 1000,
            retry_after_s=max(1, math.ceil(settings.admission_retry_after_s)),
        )


def kind_of(scope: Scope) -> str | None:
    """The kind of work a request is (see the module table); None for health (never bounded)."""
    path: str = scope.get("path", "")
    if path.startswith("/health/"):
        return None
    if path == MCP_PATH:
        return "mcp"
    if path.startswith("/audio/") and path.endswith("/stream"):
        return "stream"
    return "page"


class Gate:
    """``slots`` concurrent holders; others wait in arrival order up to ``wait_s``, then give up.

    A newcomer whose wait would end in a refusal anyway is refused at once instead (a refusal costs
    well under a millisecond; a refusal after the wait costs the whole wait, and the waiter's memory
    meanwhile): when ``4 × slots`` already wait, or when the waiters ahead of it need longer than
    ``wait_s`` to be served at the pace the slots have been freeing. That pace is ``hold_s``, the mean
    time a holder keeps its slot, measured as the gate runs (Little's law: the slot-seconds used
    between two departures, averaged over the last ~20 departures); it includes the time the held
    requests spend waiting for the CPU, so a starved process refuses sooner. Until a slot has been
    given back once, nothing is refused early. ``clock`` is for tests.
    """

    SMOOTHING = 0.05  # weight of each departure in hold_s

    def __init__(self, slots: int, wait_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.slots = slots
        self.wait_s = wait_s
        self.busy = 0
        self.max_waiters = 4 * slots
        self.hold_s = 0.0
        self._waiters: list[asyncio.Future[None]] = []
        self._clock = clock
        self._slot_seconds = 0.0  # the integral of ``busy`` over time
        self._counted_at = clock()
        self._at_departure = 0.0  # ``_slot_seconds`` at the last departure
        self._departures = 0

    def try_enter(self) -> bool:
        if self.busy < self.slots and not self._waiters:
            self._count()
            self.busy += 1
            return True
        return False

    def expected_wait(self, ahead: int) -> float:
        """Seconds until a newcomer with ``ahead`` waiters before it gets a slot, at the measured pace."""
        return (ahead + 1) * self.hold_s / self.slots

    async def enter(self) -> bool:
        """True when a slot was taken (the caller must :meth:`leave`), False when refused."""
        if self.try_enter():
            return True
        ahead = len(self._waiters)
        if self.wait_s <= 0 or ahead >= self.max_waiters or self.expected_wait(ahead) > self.wait_s:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), self.wait_s)
            return True
        except TimeoutError:
            return self._granted(waiter)  # handed over just as the wait ended: keep it
        except asyncio.CancelledError:
            if self._granted(waiter):
                self.leave()
            raise

    def _count(self) -> None:
        """Add the slot-seconds used since the last change of ``busy``."""
        now = self._clock()
        self._slot_seconds += self.busy * (now - self._counted_at)
        self._counted_at = now

    def _departed(self) -> None:
        """A holder gave its slot back: the slot-seconds since the previous departure are one sample of
        the time a holder keeps a slot (their mean is the mean holding time)."""
        self._count()
        sample = self._slot_seconds - self._at_departure
        self._at_departure = self._slot_seconds
        self._departures += 1
        weight = max(self.SMOOTHING, 1 / self._departures)  # the first samples count fully
        self.hold_s += weight * (sample - self.hold_s)

    def _granted(self, waiter: asyncio.Future[None]) -> bool:
        """Whether ``waiter`` was handed a slot; if not, it stops waiting."""
        if waiter.done() and not waiter.cancelled():
            return True
        waiter.cancel()
        self._waiters.remove(waiter)
        return False

    def leave(self) -> None:
        """Hand the slot to the oldest waiter, or free it."""
        self._departed()
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return
        self.busy -= 1


class _LoopGates:
    """The gates of one event loop (an app can be served by several loops in tests)."""

    def __init__(self, limits: AdmissionLimits) -> None:
        self.total = Gate(limits.total, 0)
        self.kinds = {"mcp": Gate(limits.mcp, limits.wait_s), "stream": Gate(limits.streams, limits.wait_s)}


class Admission:
    """ASGI middleware: admit, make wait or shed each HTTP request by its kind (module docstring)."""

    def __init__(self, app: ASGIApp, limits: AdmissionLimits) -> None:
        self.app = app
        self.limits = limits
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopGates] = weakref.WeakKeyDictionary()

    def gates(self) -> _LoopGates:
        loop = asyncio.get_running_loop()
        gates = self._gates.get(loop)
        if gates is None:
            gates = self._gates[loop] = _LoopGates(self.limits)
        return gates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = kind_of(scope) if scope["type"] == "http" and self.limits.total > 0 else None
        if kind is None:
            await self.app(scope, receive, send)
            return
        gates = self.gates()
        gate = gates.kinds.get(kind)
        if gate is not None and not await gate.enter():
            await self.shed(kind, scope, receive, send)
            return
        try:
            if not gates.total.try_enter():
                await self.shed("total", scope, receive, send)
                return
            try:
                await self.app(scope, receive, send)
            finally:
                gates.total.leave()
        finally:
            if gate is not None:
                gate.leave()

    async def shed(self, bound: str, scope: Scope, receive: Receive, send: Send) -> None:
        log.debug("shed %s %s: the %s bound is full", scope["method"], scope["path"], bound)
        exc = overloaded(bound, self.limits.retry_after_s)
        headers = {"Retry-After": str(self.limits.retry_after_s), "Cache-Control": "no-store"}
        await error_json(503, str(exc.code), exc.message, headers=headers)(scope, receive, send)


def overloaded(bound: str, retry_after_s: int) -> Overloaded:
    what = "requests" if bound == "total" else f"{bound} requests"
    return Overloaded(
        f"the server is at capacity for {what}; retry after {retry_after_s} s",
        details={"retry_after_s": retry_after_s},
    )


class ToolBounds:
    """Bounds on MCP tools that start long work (ingest), on every transport: refused at once."""

    BOUNDED = {"process_audio_complete": "ingest"}

    def __init__(self, limits: AdmissionLimits) -> None:
        self.limits = limits
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Gate] = weakref.WeakKeyDictionary()

    def enter(self, tool: str) -> Gate | None:
        """The gate taken for ``tool`` (leave it when done), None when it is not bounded.

        Raises :class:`~loist.errors.Overloaded` when its bound is full."""
        if tool not in self.BOUNDED or self.limits.total <= 0:
            return None
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            gate = self._gates[loop] = Gate(self.limits.ingests, 0)
        if not gate.try_enter():
            raise overloaded(self.BOUNDED[tool], self.limits.retry_after_s)
        return gate
