"""A dead service, for real: a loopback listener that accepts connections and never answers.

What an unreachable Cloud Storage looks like from inside a VPC or behind a stuck proxy: the TCP
connect succeeds, then nothing comes back. Every accepted connection is counted, so a test can
assert how many attempts a client made (one connection per attempt: a client drops a connection
whose read timed out), and wait, without sleeping, until ``n`` clients are hanging on it.
``close()`` resets every held connection and stops listening (clients then see a reset, then a
refused connection). ``refused_url()`` is the other dead service: a port where nothing listens.

    with Blackhole() as hole:
        store = GcsBlobStore("b", client=client_for(hole.url), ...)
        ...
        assert hole.connections == 2
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from types import TracebackType

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage


class Blackhole:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._held: list[socket.socket] = []
        self._count = 0
        self._changed = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="blackhole", daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._changed:
            return self._count

    def wait_for(self, n: int, timeout: float = 30.0) -> int:
        """Block until at least ``n`` connections were accepted (a safety ``timeout``: then fail)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._count >= n, timeout):
                raise AssertionError(f"expected {n} connections to the blackhole, got {self._count}")
            return self._count

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._changed:
                if self._closed:
                    conn.close()
                    return
                self._held.append(conn)  # held open, never read from or written to
                self._count += 1
                self._changed.notify_all()

    def close(self) -> None:
        """Reset every held connection and stop listening."""
        with self._changed:
            self._closed = True
            held, self._held = self._held, []
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() (Linux)
        except OSError:
            pass
        self._listener.close()
        for conn in held:
            try:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()  # linger 0: the client gets a reset now, not after a timeout
            except OSError:
                pass
        self._thread.join(timeout=5)

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def refused_url() -> str:
    """A loopback URL where nothing listens (a port bound and released): connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def client_for(url: str) -> storage.Client:
    """A google-cloud-storage client talking to ``url`` with anonymous credentials (like the emulator)."""
    return storage.Client(project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": url})


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    with Blackhole() as hole:
        yield hole
