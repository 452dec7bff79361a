"""Header-flood benchmark (issue #16): what unfinished giant request heads cost a ``loist serve``.

Starts ``loist serve`` (SQLite + local storage, empty library) on 127.0.0.1, reads its resident
memory, then opens ``--sockets`` connections that each send a request head with one header of
``--mb`` megabytes that never ends (no final CRLF), keeps them all open, waits until the server has
read everything that was sent (its receive queues on 127.0.0.1 are empty), and reads the memory
again: the resident set now (VmRSS) and its peak (VmHWM). A server that caps request heads
answers 431 and closes each connection after the first ~64 KiB; one that does not keeps every byte.

    .venv/bin/python bench/http_headers.py [--sockets 20] [--mb 5] [--json out.json]

Loopback only, a bounded number of connections and bytes. Prints a Markdown row for
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine
from http_load import free_port, stop, wait_live

PIECE = 64 * 1024


def status_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in KiB."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def unread_bytes(port: int) -> int:
    """Bytes sitting in the receive queues of the server's connections on ``port`` (not yet read)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].rsplit(":", 1)[1], 16)
        if local_port == port and fields[3] == "01":  # ESTABLISHED, server side
            total += int(fields[4].split(":")[1], 16)
    return total


def flood(port: int, megabytes: float) -> tuple[socket.socket, dict[str, object]]:
    """One connection sending a head with a ``megabytes`` header that never ends."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Fill: ")
    total, budget = 0, int(megabytes * 1024 * 1024)
    outcome: dict[str, object] = {"refused": False}
    piece = b"a" * PIECE
    try:
        while total < budget:
            sock.sendall(piece)
            total += PIECE
    except (BrokenPipeError, ConnectionResetError):
        outcome["refused"] = True
    outcome["sent_bytes"] = total
    sock.settimeout(0.5)
    try:
        answer = sock.recv(64)
    except (TimeoutError, ConnectionResetError):
        answer = b""
    outcome["status_line"] = answer.split(b"\r\n", 1)[0].decode("latin-1")
    outcome["refused"] = outcome["refused"] or bool(answer)
    return sock, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=20, help="concurrent connections (at most 200)")
    parser.add_argument("--mb", type=float, default=5.0, help="megabytes of header each connection sends (at most 50)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    if not (0 < args.sockets <= 200 and 0 < args.mb <= 50):
        raise SystemExit("keep the flood bounded: --sockets 1..200, --mb up to 50")

    tmp = Path(tempfile.mkdtemp(prefix="loist-bench-headers-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOIST_", "DATABASE_", "DB_", "GCS_", "STORAGE_", "AUTH_", "EMBED_", "HTTP_"))}
    env.update(LOIST_DATA_DIR=str(tmp / "data"), EMBED_BASE_URL=base, LOG_LEVEL="WARNING")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sockets: list[socket.socket] = []
    try:
        wait_live(f"{base}/health/ready", proc)
        before = status_kb(proc.pid)
        outcomes = []
        for _ in range(args.sockets):
            sock, outcome = flood(port, args.mb)
            sockets.append(sock)
            outcomes.append(outcome)
        deadline = time.monotonic() + 60
        while unread_bytes(port) and time.monotonic() < deadline:
            time.sleep(0.05)  # the server is still reading what was sent (bounded wait in a benchmark)
        after = status_kb(proc.pid)
        alive = proc.poll() is None
    finally:
        for sock in sockets:
            sock.close()
        stop(proc)
    result = {
        "sockets": args.sockets, "mb_per_socket": args.mb,
        "rss_before_mb": round(before["VmRSS"] / 1024, 1), "rss_after_mb": round(after["VmRSS"] / 1024, 1),
        "rss_peak_mb": round(after["VmHWM"] / 1024, 1),
        "refused": sum(bool(o["refused"]) for o in outcomes),
        "status_lines": sorted({str(o["status_line"]) for o in outcomes}),
        "sent_mb_total": round(sum(int(o["sent_bytes"]) for o in outcomes) / 2**20, 1),  # type: ignore[call-overload]
        "server_alive": alive, "machine": machine(),
    }
    print(json.dumps(result, indent=2))
    print("\n| sockets x MB | RSS before | RSS after | peak RSS | refused | answer | sent in total |")
    print("|---|---:|---:|---:|---:|---|---:|")
    print(f"| {args.sockets} x {args.mb:g} | {result['rss_before_mb']} MB | {result['rss_after_mb']} MB | "
          f"{result['rss_peak_mb']} MB | {result['refused']} | {', '.join(result['status_lines']) or '-'} | "
          f"{result['sent_mb_total']} MB |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
