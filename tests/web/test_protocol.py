"""The deadlines of ``loist.web.protocol`` on a virtual clock.

What cannot run here for real is time: proving that a trickling client is cut at its deadline
*despite* sending bytes, or that keep-alive follows the setting, would otherwise need the test to
wait out real seconds and race them. So the protocol under test (the real class, with the real
httptools parser and a real ASGI app on the running event loop) gets two stand-ins, and only
these: ``VirtualTimers`` replaces the loop's ``call_later`` (time moves only when the test calls
``advance``) and ``RecordingTransport`` records what would go on the wire. The same behaviours on
real sockets are in tests/e2e/test_http_limits.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from uvicorn.server import ServerState

from loist.web.protocol import HttpLimits, LimitedHttpToolsProtocol, protocol_class

LIMITS = HttpLimits(max_header_bytes=4096, max_headers=20, header_timeout_s=10.0, body_timeout_s=5.0,
                    keepalive_timeout_s=3.0)


@dataclass
class Timer:
    when: float
    callback: Callable[..., None]
    args: tuple[Any, ...]
    _cancelled: bool = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled


@dataclass
class VirtualTimers:
    """The event loop as the protocol sees it: tasks run on the real loop, timers on a virtual clock."""

    loop: asyncio.AbstractEventLoop
    now: float = 0.0
    timers: list[Timer] = field(default_factory=list)

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Timer:
        timer = Timer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def create_task(self, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        return self.loop.create_task(coro, **kwargs)

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer that falls due on the way, in order."""
        target = self.now + seconds
        while due := sorted((t for t in self.timers if not t.cancelled() and t.when <= target), key=lambda t: t.when):
            timer = due[0]
            self.timers.remove(timer)
            self.now = timer.when
            timer.callback(*timer.args)
        self.now = target


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


@dataclass
class Conn:
    protocol: LimitedHttpToolsProtocol
    transport: RecordingTransport
    clock: VirtualTimers
    responded: asyncio.Event
    release: asyncio.Event

    def feed(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def status(self) -> int:
        return int(bytes(self.transport.written).split(b" ", 2)[1]) if self.transport.written else 0


def connect(*, hold_response: bool = False) -> Conn:
    """A connection to an app that reads the body and answers 200 (after ``release`` if held)."""
    responded, release = asyncio.Event(), asyncio.Event()
    if not hold_response:
        release.set()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})
        responded.set()

    clock = VirtualTimers(asyncio.get_running_loop())
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    protocol = protocol_class(LIMITS)(config=config, server_state=ServerState(), app_state={}, _loop=clock)
    transport = RecordingTransport()
    protocol.connection_made(transport)
    return Conn(protocol, transport, clock, responded, release)


async def test_a_connection_that_sends_nothing_is_closed_at_the_head_deadline() -> None:
    conn = connect()
    conn.clock.advance(9.9)
    assert not conn.transport.closed
    conn.clock.advance(0.2)
    assert conn.transport.closed and conn.transport.written == b""  # nothing asked, nothing answered


async def test_a_trickled_head_is_cut_at_its_deadline_whatever_it_sends() -> None:
    """Slowloris: a byte every second keeps the socket busy but does not move the deadline."""
    conn = connect()
    conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    for _ in range(9):
        conn.clock.advance(1.0)
        conn.feed(b"a")
        assert not conn.transport.closed
    conn.clock.advance(1.0)
    assert conn.transport.closed and conn.status() == 408


async def test_keep_alive_follows_the_setting_and_a_new_head_gets_a_fresh_deadline() -> None:
    conn = connect()
    conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await conn.responded.wait()
    assert conn.status() == 200
    conn.clock.advance(2.9)  # idle between requests: HTTP_KEEPALIVE_TIMEOUT_S is 3
    assert not conn.transport.closed
    conn.feed(b"GET / HT")  # the next request starts at t=2.9: its head is due by t=12.9
    conn.clock.advance(9.9)
    assert not conn.transport.closed
    conn.clock.advance(0.2)
    assert conn.transport.closed and bytes(conn.transport.written).count(b"HTTP/1.1 408") == 1

    idle = connect()
    idle.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await idle.responded.wait()
    idle.clock.advance(3.1)
    assert idle.transport.closed and idle.status() == 200  # closed by keep-alive, no 408


async def test_a_pipelined_head_never_cuts_a_response_short() -> None:
    conn = connect(hold_response=True)
    conn.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost:")  # the 2nd head never ends
    conn.clock.advance(25.0)  # long past the 2nd head's deadline, but the 1st response is under way
    assert not conn.transport.closed and conn.transport.written == b""
    conn.release.set()
    await conn.responded.wait()
    assert bytes(conn.transport.written).endswith(b"\r\n\r\nok")  # the 1st response, whole
    conn.clock.advance(10.0)  # then the unfinished 2nd head is not kept for ever
    assert conn.transport.closed


async def test_a_body_must_arrive_within_its_deadline_unless_the_server_stopped_reading() -> None:
    conn = connect()
    conn.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
    conn.clock.advance(4.9)
    conn.feed(b"67")  # bytes arriving do not move the deadline
    conn.clock.advance(0.2)
    assert conn.transport.closed and conn.transport.written == b""

    paused = connect()
    paused.feed(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
    paused.protocol.flow.pause_reading()  # as uvicorn does when the app has not taken what arrived
    paused.clock.advance(12.0)
    assert not paused.transport.closed
    paused.protocol.flow.resume_reading()
    paused.feed(b"67890")
    await paused.responded.wait()
    assert paused.status() == 200


@pytest.mark.parametrize(("head", "expected"), [
    (b"GET / HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % n for n in range(21)) + b"\r\n", 431),
    (b"GET / HTTP/1.1\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n", 431),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 200),
])
async def test_head_limits(head: bytes, expected: int) -> None:
    conn = connect()
    conn.feed(head)
    if expected == 200:
        await conn.responded.wait()
    assert conn.status() == expected
