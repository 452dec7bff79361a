"""A real loopback HTTP server for download tests (threaded, 127.0.0.1, an ephemeral port).

One server runs per test session; the function-scoped ``http_server`` fixture clears its routes
and its request log before each test, so every test declares exactly the routes it uses::

    url = http_server.file("/song.mp3", data)                 # -> "http://127.0.0.1:PORT/song.mp3"
    url = http_server.redirect_chain("/hop", 3, "/song.mp3")  # 3 hops, then the file
    hits = http_server.flaky("/flaky", data, failures=2)      # 503, 503, then 200

Every request is recorded (``http_server.requests``) with its headers, so tests can assert what a
client did or did not send (e.g. no Authorization to another host). ``http_server.policy`` opens
exactly 127.0.0.1/32; ``http_server.resolver`` maps ``localhost`` and ``other.test`` to 127.0.0.1
(so a redirect from 127.0.0.1 to ``localhost`` is a redirect to another host on the same server).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from loist.ingest.netguard import AddressPolicy, Resolver, static_resolver

Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names

    @property
    def host(self) -> str:
        return self.headers.get("host", "")


@dataclass
class Counter:
    count: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bump(self) -> int:
        with self.lock:
            self.count += 1
            return self.count


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = urlsplit(self.path).path
        self.server.owner.requests.append(
            Recorded("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
        )
        handler = self.server.owner.routes.get(path)
        try:
            if handler is None:
                self.send_error(404, "no such route")
            else:
                handler(self)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts, size limits)
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet test output
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: LoopbackServer


class LoopbackServer:
    """The routes and behaviours a download can meet in the wild, on 127.0.0.1."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.requests: list[Recorded] = []
        self._httpd = _Server(("127.0.0.1", 0), _RequestHandler)
        self._httpd.owner = self
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="loopback-http", daemon=True
        )
        self.policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
        self.resolver: Resolver = static_resolver({"localhost": ["127.0.0.1"], "other.test": ["127.0.0.1"]})

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        self.routes.clear()
        self.requests.clear()

    # --- urls ----------------------------------------------------------------------------------
    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def requests_to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if urlsplit(r.path).path == path]

    # --- behaviours ----------------------------------------------------------------------------
    def route(self, path: str, handler: Handler) -> str:
        self.routes[path] = handler
        return self.url(path)

    def file(
        self,
        path: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        content_length: bool | int = True,
        headers: dict[str, str] | None = None,
    ) -> str:
        """Serve ``data``. ``content_length``: True (honest), False (none: close-delimited) or an
        int to announce a wrong length (a lying server); the full ``data`` is always sent."""

        def handler(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", content_type)
            if content_length is True:
                h.send_header("Content-Length", str(len(data)))
            elif content_length is not False:
                h.send_header("Content-Length", str(content_length))
            for name, value in (headers or {}).items():
                h.send_header(name, value)
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(data)
            h.wfile.flush()

        return self.route(path, handler)

    def drip(self, path: str, *, chunk: bytes = b"x" * 16, interval_s: float = 0.05, count: int = 400) -> str:
        """A slow server: ``chunk`` every ``interval_s`` (for total-timeout tests)."""

        def handler(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Length", str(len(chunk) * count))
            h.end_headers()
            for _ in range(count):
                h.wfile.write(chunk)
                h.wfile.flush()
                time.sleep(interval_s)  # the server side of a slow link, not a test waiting

        return self.route(path, handler)

    def gated(self, path: str, data: bytes, gate: threading.Event, *, head: int = 1024,
              content_length: bool = True) -> str:
        """Serve the headers and the first ``head`` bytes of ``data``, then the rest once the test
        sets ``gate`` (a download held mid-body, deterministically). ``content_length``: False for a
        close-delimited body."""

        def handler(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            if content_length:
                h.send_header("Content-Length", str(len(data)))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(data[:head])
            h.wfile.flush()
            gate.wait()
            h.wfile.write(data[head:])
            h.wfile.flush()

        return self.route(path, handler)

    def status(self, path: str, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> str:
        def handler(h: BaseHTTPRequestHandler) -> None:
            h.send_response(code)
            for name, value in (headers or {}).items():
                h.send_header(name, value)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

        return self.route(path, handler)

    def redirect(self, path: str, location: str, code: int = 302, headers: dict[str, str] | None = None) -> str:
        return self.status(path, code, headers={"Location": location, **(headers or {})})

    def redirect_chain(self, prefix: str, hops: int, final: str) -> str:
        """``prefix/1 -> prefix/2 -> ... -> final``: ``hops`` redirects before ``final``."""
        for index in range(1, hops + 1):
            target = f"{prefix}/{index + 1}" if index < hops else final
            self.redirect(f"{prefix}/{index}", target)
        return self.url(f"{prefix}/1")

    def redirect_loop(self, a: str, b: str) -> str:
        self.redirect(a, b)
        self.redirect(b, a)
        return self.url(a)

    def flaky(self, path: str, data: bytes, *, failures: int, code: int = 503) -> Counter:
        """``failures`` responses with ``code``, then ``data``; the counter counts attempts."""
        counter = Counter()

        def handler(h: BaseHTTPRequestHandler) -> None:
            if counter.bump() <= failures:
                h.send_response(code)
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(200)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)

        self.route(path, handler)
        return counter


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[LoopbackServer]:
    server = LoopbackServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def http_server(loopback_server: LoopbackServer) -> LoopbackServer:
    """The session's loopback server with no routes and an empty request log."""
    loopback_server.reset()
    return loopback_server


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """The event a :meth:`LoopbackServer.gated` route waits on; set at teardown, so no server
    thread is ever left waiting."""
    event = threading.Event()
    try:
        yield event
    finally:
        event.set()
