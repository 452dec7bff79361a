"""Abuse, tried as an attacker would, against real servers on loopback (bounded in count and time).

- an ingest flood from one client gets ``RATE_LIMITED`` through the official MCP client while
  another client is served (clients are told apart by their own loopback source address,
  127.0.0.2 vs 127.0.0.1, exactly as the server sees a TCP peer);
- limits are shared through Redis (127.0.0.1:6379) by two ``loist serve`` processes;
- 150 connections trickling a request head do not stop the server answering others, and are
  closed at the head deadline;
- a 10 MB ``/mcp`` body is refused with 413.

Nothing asserts on time: sockets have receive timeouts only so that a server that never answers
fails the test instead of hanging it.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import httpx2
import pytest
import redis
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import MCP_DEFAULT_SSE_READ_TIMEOUT, MCP_DEFAULT_TIMEOUT

from loist.config import Settings
from loist.web.app import create_app
from tests.mcp.test_tools import assert_error, assert_ok
from tests.support.audio import AudioFactory
from tests.support.httpserver import LoopbackServer
from tests.support.liveserver import live_server, read_to_eof, wait_until_live

pytestmark = pytest.mark.e2e

GUARD_S = 20.0
REDIS_URL = "redis://127.0.0.1:6379/0"
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def _settings(data_dir: Path, base_url: str, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, embed_base_url=base_url, **values)  # type: ignore[call-arg]


def from_address(address: str, **kwargs: object) -> httpx.Client:
    """A client whose connections leave from ``address`` (a loopback address of its own)."""
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=GUARD_S, **kwargs)  # type: ignore[arg-type]


def mcp_from(url: str, address: str) -> Client:
    transport = httpx2.AsyncHTTPTransport(local_address=address)
    timeout = httpx2.Timeout(MCP_DEFAULT_TIMEOUT, read=MCP_DEFAULT_SSE_READ_TIMEOUT)
    return Client(streamable_http_client(url, http_client=httpx2.AsyncClient(transport=transport, timeout=timeout)))


# --- an ingest flood ----------------------------------------------------------------------------------


async def test_an_ingest_flood_from_one_client_is_rate_limited_while_another_is_served(
    tmp_path: Path, http_server: LoopbackServer, audio_factory: AudioFactory
) -> None:
    url = http_server.file("/flood.wav", audio_factory("wav", duration=1.0).read_bytes(), content_type="audio/wav")
    make = lambda base: create_app(_settings(tmp_path, base, allow_private_urls=True, rate_limit_ingest="3/minute"))  # noqa: E731
    with live_server(make) as base:
        source = {"source": {"type": "http_url", "url": url}}
        async with mcp_from(f"{base}/mcp", "127.0.0.2") as flooder:
            results = [await flooder.call_tool("process_audio_complete", source) for _ in range(5)]
            for served in results[:3]:
                assert_ok(served)
            for refused in results[3:]:
                error = assert_error(refused, "RATE_LIMITED", "write calls")
                assert 1 <= error["details"]["retry_after_s"] <= 60
            assert_ok(await flooder.call_tool("search_library", {"query": "flood"}))  # reads still work
        async with mcp_from(f"{base}/mcp", "127.0.0.1") as other:
            assert assert_ok(await other.call_tool("process_audio_complete", source))["track"]["id"]


# --- shared through Redis --------------------------------------------------------------------------------


@contextmanager
def loist_serve(tmp_path: Path, names: tuple[str, ...], env_extra: dict[str, str]) -> Iterator[list[str]]:
    """``python -m loist serve`` child processes (started together), each on a free loopback port."""
    procs: list[tuple[subprocess.Popen[str], str]] = []
    try:
        for name in names:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            data_dir = tmp_path / name
            data_dir.mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("LOIST_", "DATABASE_", "DB_", "GCS_", "STORAGE_"))}
            env.update(LOIST_DATA_DIR=str(data_dir), EMBED_BASE_URL=f"http://127.0.0.1:{port}", LOG_LEVEL="WARNING",
                       **env_extra)
            proc = subprocess.Popen(
                [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True,
            )
            procs.append((proc, f"http://127.0.0.1:{port}"))
        for proc, base in procs:  # polls come from 127.0.0.1: not one of the test's clients
            wait_until_live(base, is_alive=lambda proc=proc: proc.poll() is None, timeout_s=90)  # type: ignore[misc]
        yield [base for _, base in procs]
    finally:
        for proc, _ in procs:
            proc.send_signal(signal.SIGINT)
        for proc, _ in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"loist-test-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    client.ping()
    yield prefix
    keys = list(client.scan_iter(match=f"*{prefix}*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_limits_are_shared_through_redis_by_two_server_processes(tmp_path: Path, redis_prefix: str) -> None:
    token = "shared-" + "t" * 40
    env = {"REDIS_URL": REDIS_URL, "RATE_LIMIT_KEY_PREFIX": redis_prefix, "AUTH_ENABLED": "true",
           "BEARER_TOKEN": token, "RATE_LIMIT_AUTH_FAILURES": "4/minute", "RATE_LIMIT_PUBLIC": "4/minute"}
    with loist_serve(tmp_path, ("a", "b"), env) as (a, b), \
            from_address("127.0.0.3") as attacker, from_address("127.0.0.4") as friend:
        wrong = {**MCP_HEADERS, "Authorization": "Bearer not-the-token"}
        # Four wrong guesses, two at each instance: all 401. The fifth, at either, is 429.
        assert [attacker.post(f"{base}/mcp", json={}, headers=wrong).status_code for base in (a, b, a, b)] == [401] * 4
        refused = attacker.post(f"{a}/mcp", json={}, headers=wrong)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert attacker.post(f"{b}/mcp", json={}, headers=wrong).status_code == 429
        # Public requests: 4 a minute per client across both instances.
        assert [friend.get(f"{base}/health/live").status_code for base in (a, b, a, b)] == [200] * 4
        assert friend.get(f"{b}/health/live").status_code == 429
        assert friend.get(f"{a}/health/live").status_code == 429
    client = redis.Redis.from_url(REDIS_URL)
    assert any(client.scan_iter(match=f"*{redis_prefix}/auth/ip:127.0.0.3*"))  # the counts were in Redis
    client.close()


# --- slow headers ----------------------------------------------------------------------------------------


def test_150_slow_header_connections_do_not_stop_the_server_answering_others(tmp_path: Path) -> None:
    make = lambda base: create_app(_settings(tmp_path, base, http_header_timeout_s=2.0))  # noqa: E731
    with live_server(make) as base:
        port = int(base.rsplit(":", 1)[1])
        slow: list[socket.socket] = []
        try:
            for n in range(150):
                sock = socket.create_connection(("127.0.0.1", port))
                sock.settimeout(GUARD_S)
                sock.sendall(f"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow-{n}: a".encode())
                slow.append(sock)
            for sock in slow[::10]:
                sock.sendall(b"aa")  # a trickle does not extend the head deadline
            with httpx.Client(base_url=base, timeout=GUARD_S) as other:
                assert [other.get("/health/live").status_code for _ in range(3)] == [200] * 3
                assert other.get("/health/ready").status_code == 200
            # Each slow connection is then answered 408 and closed by the server.
            answers = [read_to_eof(sock) for sock in slow]
            assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), {a[:20] for a in answers}
        finally:
            for sock in slow:
                sock.close()




# --- body size ---------------------------------------------------------------------------------------------


def test_a_10_mb_mcp_body_is_refused_with_413(tmp_path: Path) -> None:
    with live_server(lambda base: create_app(_settings(tmp_path, base))) as base:
        port = int(base.rsplit(":", 1)[1])
        size = 10 * 1024 * 1024
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(GUARD_S)
            sock.sendall((f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
                          f"Accept: application/json, text/event-stream\r\nContent-Length: {size}\r\n\r\n").encode())
            sent, piece = 0, b" " * 65536
            while sent < size and not select.select([sock], [], [], 0)[0]:  # until the server answers
                try:
                    sock.sendall(piece)
                except (BrokenPipeError, ConnectionResetError):
                    break
                sent += len(piece)
            answer = b""
            while b"}}" not in answer and (chunk := sock.recv(65536)):  # the JSON error body ends "}}"
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
        assert b'"SIZE_EXCEEDED"' in answer
        assert sent < size  # refused before the body was taken in
