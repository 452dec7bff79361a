"""HTTP connection limits on a real uvicorn (``loist.serve.uvicorn_config``) on loopback.

Raw sockets play the hostile clients: giant, never-ending and too-many headers (431), sockets that
say nothing or trickle a head (closed; 408), a request body that never arrives (closed, the app
sees a disconnect). Each socket has a receive timeout only as a bound so that a server which never
answers fails the test instead of hanging it; no assertion depends on how long anything took.
Deadline *arithmetic* (bytes do not extend a head deadline, keep-alive, flow control) is tested on
a virtual clock in tests/web/test_protocol.py.
"""

from __future__ import annotations

import logging
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from loist.config import Settings
from loist.web.app import create_app
from tests.support.liveserver import live_server, read_to_eof
from tests.support.logwatch import watching_logs

pytestmark = pytest.mark.e2e

GUARD_S = 20.0  # a server that never answers fails here instead of hanging the suite


def _settings(data_dir: Path, base_url: str, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, embed_base_url=base_url, **values)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def default_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The limits every `loist serve` has unless configured: 64 KiB of head, 100 fields."""
    data_dir = tmp_path_factory.mktemp("limits-default")
    with live_server(lambda base: create_app(_settings(data_dir, base))) as url:
        yield url


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("limits-tight")
    with live_server(lambda base: create_app(_settings(
        data_dir, base, http_max_header_bytes=4096, http_max_headers=20,
        http_header_timeout_s=1.0, http_body_timeout_s=1.0,
    ))) as url:
        yield url


def _connect(base: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])))
    sock.settimeout(GUARD_S)
    return sock


def _flood(sock: socket.socket, head: bytes, megabytes: int) -> int:
    """Send ``head`` then filler that never ends the header, until the server answers or hangs up
    (or ``megabytes`` are sent). Returns the bytes sent after the head."""
    sock.sendall(head)
    piece, sent = b"a" * 65536, 0
    while sent < megabytes * 2**20:
        if select.select([sock], [], [], 0)[0]:  # the server answered (or closed): stop sending
            break
        try:
            sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(piece)
    return sent


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _get(host_port: str, headers: list[tuple[str, str]]) -> bytes:
    lines = ["GET /health/live HTTP/1.1", f"Host: {host_port}", *(f"{k}: {v}" for k, v in headers), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_header_that_never_ends_is_431_at_the_default_limit(default_server: str) -> None:
    """The issue's attack, bounded: an unfinished 4 MiB header. The server used to keep reading."""
    with _connect(default_server) as sock:
        sent = _flood(sock, b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Fill: ", megabytes=4)
        answer = read_to_eof(sock)
    assert _status(answer) == 431, (sent, answer[:200])
    assert b'"code": "INVALID_ARGUMENT"' in answer and b"HTTP_MAX_HEADER_BYTES" in answer


def test_a_complete_head_over_the_limit_is_431_and_one_under_it_is_served(tight_server: str) -> None:
    host = tight_server.removeprefix("http://")
    with _connect(tight_server) as sock:
        sock.sendall(_get(host, [("X-Big", "b" * 3000)]))
        assert _status(read_to_eof(sock)) == 200
    with _connect(tight_server) as sock:
        sock.sendall(_get(host, [("X-Big", "b" * 2500), ("X-Big-2", "b" * 2500)]))
        assert _status(read_to_eof(sock)) == 431


def test_too_many_header_fields_is_431(tight_server: str) -> None:
    host = tight_server.removeprefix("http://")
    with _connect(tight_server) as sock:  # Host + 18 + Connection = 20 fields: the limit
        sock.sendall(_get(host, [(f"X-{n}", "1") for n in range(18)]))
        assert _status(read_to_eof(sock)) == 200
    with _connect(tight_server) as sock:
        sock.sendall(_get(host, [(f"X-{n}", "1") for n in range(19)]))
        answer = read_to_eof(sock)
    assert _status(answer) == 431 and b"more than 20 header fields" in answer


def test_a_socket_that_says_nothing_is_closed(tight_server: str) -> None:
    with _connect(tight_server) as sock:
        assert read_to_eof(sock) == b""  # closed, without an answer: nothing was asked


def test_a_head_that_stops_halfway_gets_408_and_is_closed(tight_server: str) -> None:
    with _connect(tight_server) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: 1")  # ... and nothing more
        answer = read_to_eof(sock)
    assert _status(answer) == 408 and answer.endswith(b"}")


def test_a_body_that_never_arrives_is_cut_and_the_app_sees_a_disconnect(tight_server: str) -> None:
    host = tight_server.removeprefix("http://")
    head = (f"POST /mcp HTTP/1.1\r\nHost: {host}\r\nAccept: application/json, text/event-stream\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
    left = "loist.web.mcp_route"
    with watching_logs(lambda r: r.levelno >= logging.ERROR or r.name == left) as logs:
        with _connect(tight_server) as sock:
            sock.sendall(head + b'{"jsonrpc": ')  # 12 of the 1000 bytes promised
            assert read_to_eof(sock) == b""
        assert logs.seen.wait(GUARD_S)
    # (the request's access line, status 499, may follow: it is no error, and not what this waits for)
    assert [(r.name, r.levelno) for r in logs.records
            if r.levelno >= logging.INFO and r.name.startswith("loist") and r.name != "loist.access"] == [
        ("loist.web.protocol", logging.INFO), (left, logging.INFO)]
