"""A real uvicorn server on a loopback port, in a thread, for whole-process HTTP tests.

``live_server(make_app)`` binds 127.0.0.1:0 first, so the app can be built knowing its own base
URL (``make_app(base_url)``; e.g. for ``EMBED_BASE_URL``), serves it with uvicorn (lifespan on)
and yields the base URL once ``/health/live`` answers. Readiness is a bounded poll, not a sleep.
An app from ``create_app`` runs as ``loist serve`` runs it (:func:`loist.serve.uvicorn_config`,
with the HTTP connection limits of its settings).
"""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.types import ASGIApp

from loist.serve import uvicorn_config

READY_TIMEOUT_S = 60.0  # a deadline for a dead server, not a speed claim: a loaded 2-core host can take 20 s+


def wait_until_live(base_url: str, *, is_alive: Callable[[], bool] = lambda: True,
                    timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll ``/health/live`` until it answers 200; fail if the server dies or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not is_alive():
                raise RuntimeError(f"server at {base_url} exited before it was ready")
            try:
                if client.get(f"{base_url}/health/live").status_code == 200:
                    return
            except httpx.TransportError as exc:
                last = exc
            time.sleep(0.02)  # poll interval of a bounded loop, not a wait for a guess
    raise TimeoutError(f"server at {base_url} not live after {timeout_s}s: {last!r}")


@contextmanager
def live_server(make_app: Callable[[str], ASGIApp]) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    app = make_app(base_url)
    web = getattr(getattr(app, "state", None), "web", None)  # create_app's context: serve it as `loist serve` does
    if web is not None:
        config = uvicorn_config(app, web.settings, log_level="warning", access_log=False)
    else:
        config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    try:
        wait_until_live(base_url, is_alive=thread.is_alive)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def read_to_eof(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except ConnectionResetError:
        pass
    return got


def interrupt(proc: subprocess.Popen[str], timeout_s: float = 20) -> tuple[str, str]:
    """Stop a served process as Ctrl-C does (SIGINT), killing it past ``timeout_s``; its (stdout, stderr)."""
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out or "", err or ""
