"""What metrics cost on the hot paths: embed pages over HTTP and catalog searches, paired runs.

1. ``embed``: three ``loist serve`` processes at once on one data dir (SQLite + local storage, one
   ingested WAV), each one uvicorn process: the code of ``--base`` (default ``main``, exported
   with ``git archive`` and put first on ``PYTHONPATH``), this checkout with ``METRICS_PORT=0``
   (metrics off) and this checkout with metrics on. ``wrk`` (1 thread, keep-alive) loads
   ``GET /embed/{id}`` on one server at a time, in rounds whose server order is shuffled, so
   whatever else runs on the machine weighs on all three alike. The figure to read is the server
   process's CPU time per request (``/proc/PID/stat``), which other load on the machine moves far
   less than throughput; medians over the rounds.
2. ``search``: the fixed query mix of ``bench/search.py`` on a SQLite library of ``--tracks``
   synthetic tracks, ``Catalog.search`` in-process, passes alternating metrics off and on (the
   families swapped in and out of :mod:`loist.telemetry.metrics` between passes).

    .venv/bin/python bench/telemetry_overhead.py [--rounds 8] [--duration 5] [--tracks 20000]

Prints Markdown tables for docs/benchmarks.md. The target: metrics on at most 3 % slower.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine
from http_load import LUA, free_port, make_wav, run_wrk, seed, stop, wait_live

ROOT = Path(__file__).resolve().parents[1]


def export_base(ref: str, folder: Path) -> Path:
    """The ``src`` tree of ``ref``, to run the code as it was before."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "src"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder / "src"


def start_server(name: str, data_dir: Path, env: dict[str, str], log_level: str) -> tuple[str, str, subprocess.Popen[bytes]]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    full = {k: v for k, v in os.environ.items() if not k.startswith(("LOIST_", "DATABASE_", "METRICS_", "OTEL_"))}
    full.update(LOIST_DATA_DIR=str(data_dir), EMBED_BASE_URL=base, LOG_LEVEL=log_level, **env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
        env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_live(f"{base}/health/live", proc)
    return name, base, proc


def bench_embed(args: argparse.Namespace, work: Path) -> list[str]:
    data_dir = work / "data"
    track = asyncio.run(seed(data_dir, make_wav(work / "tone.wav", 5)))
    base_src = export_base(args.base, work / "base")
    script = work / "bench.lua"
    script.write_text(LUA)
    servers = [
        start_server(f"{args.base} (before)", data_dir, {"PYTHONPATH": str(base_src), "METRICS_PORT": "0"}, args.log_level),
        start_server("metrics off", data_dir, {"METRICS_PORT": "0"}, args.log_level),
        start_server("metrics on", data_dir, {"METRICS_PORT": str(free_port())}, args.log_level),
    ]
    results: dict[str, list[dict[str, int]]] = {name: [] for name, _, _ in servers}
    wrk = argparse.Namespace(threads=1, connections=args.connections, duration=args.duration)
    try:
        for _, base, _ in servers:  # warm-up: templates, caches, the pool
            run_wrk(f"{base}/embed/{track}", argparse.Namespace(**{**vars(wrk), "duration": 2}), script, {})
        for _ in range(args.rounds):
            for name, base, proc in random.sample(servers, len(servers)):
                cpu = cpu_seconds(proc.pid)
                result = run_wrk(f"{base}/embed/{track}", wrk, script, {})
                result["cpu_us"] = round((cpu_seconds(proc.pid) - cpu) * 1e6)
                results[name].append(result)
    finally:
        for _, _, proc in servers:
            stop(proc)
    print("per-round CPU µs/request:", {n: [round(r["cpu_us"] / r["requests"], 1) for r in runs] for n, runs in results.items()},
          file=sys.stderr)

    def per_request(runs: list[dict[str, int]]) -> float:
        return statistics.median(r["cpu_us"] / r["requests"] for r in runs)

    def paired(runs: list[dict[str, int]], against: list[dict[str, int]]) -> float:
        """The median over the rounds of this server's CPU per request over the other's, minus 1."""
        return statistics.median(
            (r["cpu_us"] / r["requests"]) / (b["cpu_us"] / b["requests"]) for r, b in zip(runs, against, strict=True)
        ) - 1

    base_runs, off_runs = results[servers[0][0]], results[servers[1][0]]
    rows = [
        f"| server | server CPU µs per request (median of {args.rounds}) | vs before | vs metrics off "
        "| req/s | p50 ms | p95 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        cpu = per_request(runs)
        rps = statistics.median(r["requests"] / r["duration_us"] * 1e6 for r in runs)
        p50 = statistics.median(r["p50_us"] for r in runs) / 1000
        p95 = statistics.median(r["p95_us"] for r in runs) / 1000
        errors = sum(r["errors"] for r in runs)
        rows.append(f"| {name} | {cpu:.1f} | {paired(runs, base_runs):+.1%} | {paired(runs, off_runs):+.1%} "
                    f"| {rps:,.0f} | {p50:.2f} | {p95:.2f} | {errors} |")
    return rows


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_embed_asgi(args: argparse.Namespace, work: Path) -> list[str]:
    """The real app called in-process (no sockets, no uvicorn), its CPU time per ``GET /embed/{id}``,
    three variants interleaved in batches of 100 requests so load on the machine weighs on all alike:
    the app without the telemetry middleware (the code before, as near as one process gets), and
    with it, metrics off and on."""
    from loist.config import Settings
    from loist.logs import configure_logging
    from loist.telemetry import metrics
    from loist.web.app import create_app
    from loist.web.observe import Observe

    data_dir = work / "data-asgi"
    track = asyncio.run(seed(data_dir, make_wav(work / "tone-asgi.wav", 5)))
    settings = Settings(_env_file=None, data_dir=data_dir, embed_base_url="http://127.0.0.1:8080")  # type: ignore[call-arg]
    configure_logging(settings.model_copy(update={"log_level": "WARNING"}))  # as the servers above: no access lines
    observed, bare = create_app(settings), create_app(settings)
    bare.user_middleware = [m for m in bare.user_middleware if m.cls is not Observe]
    families = metrics.enable()
    path = f"/embed/{track}"
    headers = [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"bench"), (b"accept", b"*/*")]

    async def batch(app: object, n: int) -> float:
        async def receive() -> dict[str, object]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, object]) -> None:
            assert message["type"] != "http.response.start" or message["status"] == 200

        started = time.process_time()
        for _ in range(n):
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                     "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                     "headers": headers, "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}
            await app(scope, receive, send)  # type: ignore[operator]
        return (time.process_time() - started) / n * 1e6

    async def run() -> dict[str, list[float]]:
        variants = {"without the telemetry middleware": (bare, None), "metrics off": (observed, None),
                    "metrics on": (observed, families)}
        times: dict[str, list[float]] = {name: [] for name in variants}
        async with bare.router.lifespan_context(bare), observed.router.lifespan_context(observed):
            for app, on in variants.values():
                metrics._families = on  # noqa: SLF001 - the switch under test
                await batch(app, 300)  # warm-up
            for _ in range(args.batches):
                for name, (app, on) in random.sample(list(variants.items()), len(variants)):
                    metrics._families = on  # noqa: SLF001
                    times[name].append(await batch(app, 100))
        metrics._families = families  # noqa: SLF001
        return times

    times = asyncio.run(run())
    before = statistics.median(times["without the telemetry middleware"])
    rows = [f"| app | CPU µs per embed request (median of {args.batches} batches of 100) | vs without |",
            "|---|---:|---:|"]
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(f"| {name} | {median:.1f} | {median / before - 1:+.1%} |")
    return rows


def bench_search(args: argparse.Namespace, work: Path) -> list[str]:
    from search import library_url, query_mix

    from loist.catalog import Catalog
    from loist.telemetry import metrics

    async def run() -> dict[str, list[float]]:
        url = await library_url("sqlite", args.tracks, Path(args.data_dir), reseed=False)
        catalog = Catalog.from_url(url)
        cases = query_mix()
        families = metrics.enable()
        times: dict[str, list[float]] = {"metrics off": [], "metrics on": []}
        try:
            for case in cases:  # warm-up
                await catalog.search(case.request)
            for n in range(args.rounds * 2):
                mode = ("metrics off", "metrics on")[n % 2]
                metrics._families = families if mode == "metrics on" else None  # noqa: SLF001 - the switch under test
                for case in cases:
                    started = time.perf_counter()
                    await catalog.search(case.request)
                    times[mode].append(time.perf_counter() - started)
        finally:
            await catalog.close()
        return times

    times = asyncio.run(run())
    off = statistics.median(times["metrics off"])
    rows = ["| metrics | searches | median ms | p95 ms | vs off |", "|---|---:|---:|---:|---:|"]
    for mode, values in times.items():
        values.sort()
        median, p95 = statistics.median(values), values[int(len(values) * 0.95)]
        rows.append(f"| {mode} | {len(values)} | {median * 1000:.2f} | {p95 * 1000:.2f} | {median / off - 1:+.1%} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--what", choices=["embed", "embed-asgi", "search", "all"], default="all")
    parser.add_argument("--batches", type=int, default=200, help="embed-asgi: batches of 100 requests per variant")
    parser.add_argument("--base", default="main", help="git ref of the code before (default: main)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=int, default=5, help="seconds of wrk per round and server")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--tracks", type=int, default=20000)
    parser.add_argument("--log-level", default="WARNING",
                        help="the servers' LOG_LEVEL: INFO writes an access line per request (to /dev/null here)")
    parser.add_argument("--data-dir", default=str(Path(tempfile.gettempdir()) / "loist-bench"))
    args = parser.parse_args()
    print(f"machine: {machine()}; load before: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="loist-telemetry-bench-") as tmp:
        if args.what in ("embed", "all"):
            print("\n".join(bench_embed(args, Path(tmp))))
        if args.what in ("embed-asgi", "all"):
            print("\n".join(bench_embed_asgi(args, Path(tmp))))
        if args.what in ("search", "all"):
            print("\n".join(bench_search(args, Path(tmp))))
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
