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

    base_runs = results[servers[0][0]]
    rows = [
        f"| server | server CPU µs per request (median of {args.rounds}) | vs before (median of the rounds' ratios) "
        "| req/s | p50 ms | p95 ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, runs in results.items():
        cpu = per_request(runs)
        ratio = statistics.median(
            (r["cpu_us"] / r["requests"]) / (b["cpu_us"] / b["requests"]) for r, b in zip(runs, base_runs, strict=True)
        )
        rps = statistics.median(r["requests"] / r["duration_us"] * 1e6 for r in runs)
        p50 = statistics.median(r["p50_us"] for r in runs) / 1000
        p95 = statistics.median(r["p95_us"] for r in runs) / 1000
        errors = sum(r["errors"] for r in runs)
        rows.append(f"| {name} | {cpu:.1f} | {ratio - 1:+.1%} | {rps:,.0f} | {p50:.2f} | {p95:.2f} | {errors} |")
    return rows


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
    parser.add_argument("--what", choices=["embed", "search", "both"], default="both")
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
        if args.what in ("embed", "both"):
            print("\n".join(bench_embed(args, Path(tmp))))
        if args.what in ("search", "both"):
            print("\n".join(bench_search(args, Path(tmp))))
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
