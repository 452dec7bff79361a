"""Scaling out, locally: 1, 2 and 4 ``loist serve`` processes behind nginx, against one PostgreSQL.

What Cloud Run does with instances, done here with processes: each server is its own process
(``WEB_WORKERS=1``, its own pool of ``DB_POOL_SIZE`` connections), nginx (Debian's, one worker)
spreads requests over them round-robin with keep-alive upstream connections, and they share one
PostgreSQL catalogue and one blob folder. A closed-loop client (``--connections`` concurrent
requests, each starting when the previous one ends, the mix of ``bench/mixed_load.py``) saturates
the front, so the figure is the most the set of servers completes per second; the servers' CPU time
and the machine's load are recorded beside it, because on a shared host the ceiling is the cores the
servers get, not the number of servers.

    .venv/bin/python bench/scaling.py [--servers 1,2,4] [--seconds 20] [--connections 32]
        [--pg postgresql://postgres@127.0.0.1:5432/loist_scaling] [--tracks 20000] [--nice -10]

Prints a Markdown table for docs/capacity.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from common import machine

sys.path.insert(0, str(Path(__file__).parent))
from http_load import free_port, stop, wait_live  # noqa: E402
from mixed_load import MIX, Client, cpu_seconds, ensure_library, pct  # noqa: E402

NGINX = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    upstream loist {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://loist;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_buffering off;
        }}
    }}
}}
"""


def prepare_database(pg_url: str) -> None:
    """Create the scaling database if it is missing (the PostgreSQL of the test suite: trust auth)."""
    import psycopg

    base, _, name = pg_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')


async def saturate(base: str, track_id: str, connections: int, seconds: float) -> Client:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        client = Client(base, track_id, session)
        names, weights = list(MIX), list(MIX.values())
        deadline = time.perf_counter() + seconds

        async def loop() -> None:
            while time.perf_counter() < deadline:
                await client.one(client.rng.choices(names, weights)[0], time.perf_counter())

        await asyncio.gather(*(loop() for _ in range(connections)))
        return client


def run_set(args: argparse.Namespace, count: int, track_id: str, env: dict[str, str], nginx_bin: str) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="loist-scaling-"))
    front = f"http://127.0.0.1:{free_port()}"
    ports = [free_port() for _ in range(count)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in ports:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
                cwd=args.data, env={**env, "EMBED_BASE_URL": front}, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL, preexec_fn=(lambda: os.nice(args.nice)) if args.nice else None))  # noqa: PLW1509
        for port, proc in zip(ports, procs, strict=True):
            wait_live(f"http://127.0.0.1:{port}/health/live", proc, timeout_s=120)
        servers = "\n".join(f"        server 127.0.0.1:{port};" for port in ports)
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX.format(tmp=tmp, servers=servers, port=front.rsplit(":", 1)[1]))
        nginx = subprocess.Popen([nginx_bin, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "start.log")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_live(f"{front}/health/live", nginx)
            asyncio.run(saturate(front, track_id, 8, 3))  # warm-up: every server's caches and pool
            load, cpu_before = os.getloadavg()[0], sum(cpu_seconds(p.pid) for p in procs)
            started = time.perf_counter()
            client = asyncio.run(saturate(front, track_id, args.connections, args.seconds))
            wall = time.perf_counter() - started
            cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu_before
        finally:
            stop(nginx)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    ok = sum(len(k.latencies) for k in client.kinds.values())
    for name, kind in client.kinds.items():
        if kind.errors:
            print(f"  {count} servers: {kind.errors} {name} errors, e.g. {kind.sample_error}", file=sys.stderr)
    return {
        "servers": count, "wall_s": round(wall, 1), "load1": round(load, 2), "ok_per_s": round(ok / wall, 1),
        "searches_per_s": round(len(client.kinds["search"].latencies) / wall, 1),
        "errors": sum(k.errors for k in client.kinds.values()), "shed": sum(k.shed for k in client.kinds.values()),
        "server_cpu_s": round(cpu, 1), "ok_per_cpu_s": round(ok / max(cpu, 0.01), 1),
        "search_p95_ms": round(pct(client.kinds["search"].latencies, 95) * 1000, 1),
        "embed_p95_ms": round(pct(client.kinds["embed"].latencies, 95) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--servers", default="1,2,4", help="server counts, one round each")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=32, help="concurrent client requests")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/loist_scaling")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "loist-scaling")
    parser.add_argument("--tracks", type=int, default=20_000)
    parser.add_argument("--nice", type=int, default=0, help="scheduling priority of servers and client (root)")
    args = parser.parse_args()
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx_bin).exists():
        raise SystemExit("nginx is required (apt-get install nginx)")
    if args.nice:
        os.nice(args.nice)
    args.data = args.data.resolve()
    prepare_database(args.pg)
    # One client address drives every request: per-client rate limits would measure the limiter
    # (each process keeps its own counts, so N servers allow N times as much), not the servers.
    extra = {"DATABASE_URL": args.pg, "WEB_WORKERS": "1", "RATE_LIMITS_ENABLED": "false"}
    subprocess.run([sys.executable, "-m", "loist", "db", "upgrade"], check=True, cwd=tempfile.gettempdir(),
                   env={**os.environ, "LOIST_DATA_DIR": str(args.data / "data"), **extra})
    track_id = ensure_library(args.data, args.tracks, None, extra)
    from mixed_load import server_env

    env = server_env(args.data, None, extra)
    rows = [run_set(args, int(n), track_id, env, nginx_bin) for n in args.servers.split(",")]
    print(f"Machine: {machine()}; nginx round-robin; PostgreSQL {args.tracks} tracks; "
          f"{args.connections} concurrent client requests; nice {args.nice}")
    print("| servers | completed/s | searches completed/s | errors | shed | search p95 | embed p95 | server CPU "
          "| completed per CPU-s | load1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['servers']} | {r['ok_per_s']} | {r['searches_per_s']} | {r['errors']} | {r['shed']} | {r['search_p95_ms']} ms | "
              f"{r['embed_p95_ms']} ms | {r['server_cpu_s']} s / {r['wall_s']} s | {r['ok_per_cpu_s']} | {r['load1']} |")


if __name__ == "__main__":
    main()
