"""Admission control: per-kind bounds, waiting in arrival order, shedding with 503 + Retry-After,
health never refused, cheap pages admitted while the expensive kinds are full, the MCP ingest bound."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from loist.config import Settings
from loist.errors import ErrorCode, Overloaded
from loist.mcp.server import create_mcp_server
from loist.web.admission import Admission, AdmissionLimits, Gate, ToolBounds, kind_of
from loist.web.app import create_app


def limits(**values: float) -> AdmissionLimits:
    base = {"total": 10, "mcp": 1, "streams": 1, "ingests": 1, "wait_s": 0.0, "retry_after_s": 3}
    return AdmissionLimits(**{**base, **values})  # type: ignore[arg-type]


class Held:
    """A toy app whose /mcp and stream routes wait for ``release`` (a request in flight)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    def app(self, bounds: AdmissionLimits) -> Starlette:
        async def slow(request: Request) -> PlainTextResponse:
            self.entered.set()
            await self.release.wait()
            return PlainTextResponse("slow")

        async def fast(request: Request) -> PlainTextResponse:
            return PlainTextResponse("fast")

        routes = [Route("/mcp", slow, methods=["POST"]), Route("/audio/{id}/stream", slow),
                  Route("/embed/{id}", fast), Route("/health/live", fast)]
        return Starlette(routes=routes, middleware=[Middleware(Admission, limits=bounds)])


def client(app: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_requests_are_sorted_by_kind() -> None:
    assert kind_of({"path": "/mcp"}) == "mcp"
    assert kind_of({"path": "/audio/x/stream"}) == "stream"
    assert kind_of({"path": "/audio/x/thumbnail"}) == "page"
    assert kind_of({"path": "/embed/x"}) == "page"
    assert kind_of({"path": "/health/ready"}) is None


async def test_past_its_bound_a_kind_is_shed_with_retry_after_while_pages_and_health_pass() -> None:
    held = Held()
    async with client(held.app(limits(total=2))) as http:
        first = asyncio.create_task(http.post("/mcp"))
        await held.entered.wait()
        shed = await http.post("/mcp")
        assert shed.status_code == 503
        assert shed.headers["retry-after"] == "3"
        assert shed.json()["error"]["code"] == "OVERLOADED"
        assert (await http.get("/embed/x")).status_code == 200  # the cheap page is not held back
        stream = asyncio.create_task(http.get("/audio/x/stream"))  # the second of total=2
        while _gates(http).total.busy < 2:
            await asyncio.sleep(0)
        full = await http.get("/embed/x")
        assert full.status_code == 503 and full.headers["retry-after"] == "3"  # past the total
        assert (await http.get("/health/live")).status_code == 200  # health is never refused
        held.release.set()
        assert (await first).status_code == 200 and (await stream).status_code == 200
        assert (await http.post("/mcp")).status_code == 200  # the slots came back


def _gates(http: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """The gates of the app's Admission middleware on this event loop."""
    layer = http._transport.app.middleware_stack  # type: ignore[attr-defined]
    while not isinstance(layer, Admission):
        layer = layer.app
    return layer.gates()


async def test_a_waiting_request_gets_the_slot_when_it_frees_within_the_wait() -> None:
    held = Held()
    async with client(held.app(limits(wait_s=30))) as http:
        first = asyncio.create_task(http.post("/mcp"))
        await held.entered.wait()
        second = asyncio.create_task(http.post("/mcp"))
        gate = _gates(http).kinds["mcp"]
        while not gate._waiters:
            await asyncio.sleep(0)
        held.release.set()
        assert (await first).status_code == 200
        assert (await second).status_code == 200
        assert gate.busy == 0 and not gate._waiters


async def test_a_gate_hands_slots_over_in_arrival_order_and_gives_up_after_its_wait() -> None:
    gate = Gate(1, wait_s=30)
    assert await gate.enter()
    order: list[int] = []

    async def waiter(n: int) -> None:
        assert await gate.enter()
        order.append(n)
        gate.leave()

    tasks = [asyncio.create_task(waiter(n)) for n in range(3)]
    while len(gate._waiters) < 3:
        await asyncio.sleep(0)
    gate.leave()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2] and gate.busy == 0

    short = Gate(1, wait_s=0.01)
    assert await short.enter()
    assert await short.enter() is False  # the wait ran out: refused
    assert short._waiters == [] and short.busy == 1


def answered_without_waiting(coro: Coroutine[Any, Any, bool]) -> bool:
    """The coroutine's result if it finishes without suspending once (it never waited)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return bool(stop.value)
    coro.close()
    raise AssertionError("it waited")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_gate_measures_how_long_a_slot_is_held() -> None:
    clock = Clock()
    gate = Gate(2, wait_s=1, clock=clock)
    assert gate.try_enter() and gate.hold_s == 0.0  # nothing measured yet
    clock.now += 0.01
    assert gate.try_enter()
    for _ in range(200):  # steady state: every 10 ms one holder leaves and one enters; each holds 20 ms
        clock.now += 0.01
        gate.leave()
        assert gate.try_enter()
    assert gate.hold_s == pytest.approx(0.02, rel=0.01)
    assert gate.expected_wait(0) == pytest.approx(0.01, rel=0.01)  # two slots: one frees every 10 ms
    assert gate.expected_wait(9) == pytest.approx(0.1, rel=0.01)


async def test_a_newcomer_that_could_not_be_served_within_the_wait_is_refused_at_once() -> None:
    clock = Clock()
    gate = Gate(1, wait_s=100, clock=clock)
    assert await gate.enter()
    clock.now += 50
    gate.leave()  # one holder kept the slot 50 s
    assert gate.hold_s == pytest.approx(50)
    assert await gate.enter()
    waiting = [asyncio.create_task(gate.enter()) for _ in range(2)]  # served in 50 and 100 s: they wait
    while len(gate._waiters) < 2:
        await asyncio.sleep(0)
    assert answered_without_waiting(gate.enter()) is False  # the third would need 150 s: refused at once
    assert len(gate._waiters) == 2 and not any(task.done() for task in waiting)
    gate.leave()
    assert await waiting[0]  # the slot went to the oldest waiter
    gate.leave()
    assert await waiting[1]
    gate.leave()
    assert gate.busy == 0 and not gate._waiters


async def test_past_saturation_the_excess_is_shed_at_once_not_after_the_wait() -> None:
    held = Held()
    async with client(held.app(limits(wait_s=3600))) as http:
        first = asyncio.create_task(http.post("/mcp"))
        await held.entered.wait()
        gate = _gates(http).kinds["mcp"]
        gate.hold_s = 7200.0  # as measured on a starved server: the slot frees too slowly for anyone waiting
        shed = await http.post("/mcp")  # with the first still held: it did not wait for the slot
        assert shed.status_code == 503 and shed.headers["retry-after"] == "3"
        assert shed.json()["error"]["code"] == "OVERLOADED"
        assert not gate._waiters
        assert (await http.get("/embed/x")).status_code == 200  # cheap pages still pass
        held.release.set()
        assert (await first).status_code == 200


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    gate = Gate(1, wait_s=30)
    assert await gate.enter()
    task = asyncio.create_task(gate.enter())
    while not gate._waiters:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gate._waiters == []
    gate.leave()
    assert gate.busy == 0


async def test_the_queue_of_waiters_is_bounded() -> None:
    gate = Gate(1, wait_s=30)
    assert await gate.enter()
    waiters = [asyncio.create_task(gate.enter()) for _ in range(4)]
    while len(gate._waiters) < 4:
        await asyncio.sleep(0)
    assert await gate.enter() is False  # the fifth waiter is refused at once
    for task in waiters:
        task.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)


async def test_zero_turns_admission_control_off() -> None:
    held = Held()
    async with client(held.app(limits(total=0))) as http:
        first = asyncio.create_task(http.post("/mcp"))
        await held.entered.wait()
        second = asyncio.create_task(http.post("/mcp"))
        held.release.set()
        assert (await first).status_code == 200 and (await second).status_code == 200


async def test_an_ingest_past_its_bound_is_an_overloaded_tool_result(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, max_concurrent_ingests=1)  # type: ignore[call-arg]
    server = create_mcp_server(settings)
    held = server.bounds.enter("process_audio_complete")  # one ingest in flight
    try:
        result = await server.call_tool(
            "process_audio_complete", {"source": {"type": "http_url", "url": "https://example.com/a.mp3"}})
    finally:
        assert held is not None
        held.leave()
    assert result.is_error
    assert result.structured_content["error"]["code"] == "OVERLOADED"
    assert result.structured_content["error"]["details"] == {"retry_after_s": 1}
    assert server.bounds.enter("search_library") is None  # reads are bounded at the HTTP edge only


def test_tool_bounds_raise_overloaded() -> None:
    bounds = ToolBounds(limits(ingests=1))

    async def twice() -> None:
        gate = bounds.enter("process_audio_complete")
        with pytest.raises(Overloaded) as caught:
            bounds.enter("process_audio_complete")
        assert caught.value.code is ErrorCode.OVERLOADED and caught.value.http_status == 503
        assert gate is not None
        gate.leave()

    asyncio.run(twice())


def test_the_app_applies_admission_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, max_concurrent_mcp=3, admission_wait_ms=50)  # type: ignore[call-arg]
    app = create_app(settings)
    found = [m for m in app.user_middleware if m.cls is Admission]
    assert len(found) == 1
    bounds = found[0].kwargs["limits"]
    assert (bounds.mcp, bounds.wait_s) == (3, 0.05)
