"""Background jobs beside requests: do a server's own job workers slow what it serves?

One `loist serve`-shaped app (uvicorn, `create_app(..., job_workers=1)`) on a fresh embedded library
holding one long AIFF (so both a waveform and a web rendition are due). Small ranged stream reads
(64 KiB, what a player sends while seeking) are timed one after another, first while the jobs are
held back (idle), then while the worker makes the waveform and the rendition, until both are done.

    .venv/bin/python bench/jobs.py [--minutes 5] [--requests 300]

Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from loist.config import Settings  # noqa: E402
from loist.library.service import Library  # noqa: E402
from loist.serve import uvicorn_config  # noqa: E402
from loist.web.app import create_app  # noqa: E402


def make_aiff(path: Path, minutes: float) -> None:
    source = f"sine=frequency=220:duration={minutes * 60}"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,  # noqa: S603,S607
                    "-ac", "2", "-ar", "44100", "-c:a", "pcm_s16be", str(path)], check=True)


def timed(client: httpx.Client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url, headers={"Range": "bytes=1000000-1065535"})
    assert response.status_code == 206, response.status_code
    return (time.perf_counter() - started) * 1000


def summary(ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return f"{statistics.median(ordered):.1f} / {p95:.1f} / {ordered[-1]:.1f} ms ({len(ordered)} requests)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--requests", type=int, default=300)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="loist-bench-jobs-"))
    aiff = work / "long.aiff"
    make_aiff(aiff, args.minutes)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = Settings(_env_file=None, data_dir=work / "data", embed_base_url=base, jobs_poll_s=0.2)  # type: ignore[call-arg]

    async def ingest() -> str:
        async with await Library.open(settings) as lib:
            return str((await lib.ingest_file(aiff)).id)

    track_id = asyncio.run(ingest())
    db = sqlite3.connect(settings.data_dir / "loist.db")
    db.execute("UPDATE jobs SET run_at = '2100-01-01 00:00:00.000000'")  # held back: the idle phase
    db.commit()
    server = uvicorn.Server(uvicorn_config(create_app(settings, job_workers=1), settings, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    url = f"{base}/audio/{track_id}/original"
    with httpx.Client(timeout=30) as client:
        while True:
            try:
                client.get(f"{base}/health/live")
                break
            except httpx.TransportError:
                time.sleep(0.05)
        idle = [timed(client, url) for _ in range(args.requests)]
        db.execute("UPDATE jobs SET run_at = '2000-01-01 00:00:00.000000'")
        db.commit()
        started = time.perf_counter()
        busy: list[float] = []
        while db.execute("SELECT count(*) FROM jobs WHERE state <> 'done'").fetchone()[0]:
            busy.append(timed(client, url))
        jobs_s = time.perf_counter() - started
    server.should_exit = True
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    print("| phase | 64 KiB ranged read: median / p95 / max |")
    print("|---|---|")
    print(f"| idle (jobs held back) | {summary(idle)} |")
    print(f"| while the worker made the waveform and the rendition of a {args.minutes:g}-minute AIFF "
          f"({jobs_s:.1f} s) | {summary(busy)} |")


if __name__ == "__main__":
    main()
