"""Open-loop mixed-load benchmark: what one ``loist serve`` does when assistants search, listeners
stream and pages unfurl, all at once.

The client starts requests at a fixed offered rate whatever the server does, and counts each
request's latency from its *scheduled* start, so a stalled server cannot hide behind fewer
requests (no coordinated omission). The mix, by default: 40 % MCP ``search_library`` (streamable
HTTP JSON-RPC, stateless), 20 % embed pages, 15 % oEmbed, 20 % 1 MiB stream ranges, 5 % health.
A ``429``/``503`` answer carrying ``Retry-After`` is counted as *shed* (the server refused work it
could not do in time), every other non-2xx, transport error or MCP ``isError`` as an *error*.

Set-up (once per ``--data`` directory): ``loist seed --synthetic N`` on the embedded SQLite
catalogue, plus one ~10 MB WAV ingested for the stream ranges. Each round starts a fresh server.

    .venv/bin/python bench/mixed_load.py --data /tmp/mixed20k --rates 150,300,600 --seconds 20 \
        [--src OTHER_CHECKOUT/src] [--server-env WEB_WORKERS=2] [--json out.json]
    .venv/bin/python bench/mixed_load.py --data /tmp/mixed20k --rates 300 --seconds 600   # soak

``--src`` runs the server from another checkout's ``src`` (``git archive`` of a baseline) with this
venv, for before/after pairs. Anonymous memory (``RssAnon``, summed over the server's processes) is
read before and after each round. Prints a Markdown table for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from common import machine

sys.path.insert(0, str(Path(__file__).parent))
from http_load import free_port, make_wav, stop, wait_live  # noqa: E402

RANGE = 1024 * 1024
MIX = {"search": 0.40, "embed": 0.20, "oembed": 0.15, "stream": 0.20, "health": 0.05}
WORDS = ("love", "night", "heart fire", "summer dream", "blue", "river", "city road", "gold",
         "moon", "star*", "dark light", "ocean", "angel", "highway", "rain", "artist:john", "storm",
         "year:1990..1999", "electric", "velvet", "broken heart", "queen", "radio", "mirror")


@dataclass
class Kind:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    shed: int = 0
    shed_latencies: list[float] = field(default_factory=list)
    sample_error: str = ""


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def family(pid: int) -> list[int]:
    """``pid`` and its children (worker processes)."""
    try:
        return [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    except OSError:
        return [pid]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and its children so far."""
    total = 0
    for p in family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """This process's (the client's) user + system CPU time, children not counted."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_anon_mb(pid: int) -> float:
    """RssAnon of ``pid`` and its children (worker processes), in MB."""
    total = 0
    for p in family(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def ensure_library(data: Path, tracks: int, src: Path | None, extra: dict[str, str] | None = None) -> str:
    """Seed ``data`` (and the database ``extra`` names, if any) once; returns the id of the real
    (streamable) track."""
    marker = data / "bench-stream-id"
    if marker.exists():
        return marker.read_text().strip()
    data.mkdir(parents=True, exist_ok=True)
    env = server_env(data, src, extra or {})
    loist = [sys.executable, "-m", "loist"]
    if extra or not (data / "data" / "loist.db").exists():
        subprocess.run([*loist, "seed", "--synthetic", str(tracks)], env=env, check=True, cwd=data)
    wav = make_wav(data / "stream.wav", 60)
    out = subprocess.run([*loist, "ingest", str(wav), "--json"], env=env, check=True, cwd=data,
                         capture_output=True, text=True).stdout
    track_id = find_id(json.loads(out))
    marker.write_text(track_id)
    return track_id


def find_id(doc: object) -> str:
    if isinstance(doc, dict):
        if "id" in doc and isinstance(doc["id"], str):
            return doc["id"]
        for value in doc.values():
            try:
                return find_id(value)
            except LookupError:
                continue
    if isinstance(doc, list):
        for value in doc:
            try:
                return find_id(value)
            except LookupError:
                continue
    raise LookupError("no id in the ingest output")


def server_env(data: Path, src: Path | None, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOIST_", "DATABASE_", "DB_", "GCS_", "STORAGE_", "AUTH_", "EMBED_", "WEB_",
                                "MAX_CONCURRENT"))}
    env.update(LOIST_DATA_DIR=str(data / "data"), LOG_LEVEL="WARNING")
    if src is not None:
        env["PYTHONPATH"] = str(src)
    env.update(extra)
    return env


class Client:
    def __init__(self, base: str, track_id: str, session: aiohttp.ClientSession) -> None:
        self.base, self.track_id, self.session = base, track_id, session
        self.rng = random.Random(7)  # noqa: S311 - a benchmark's mix, not security
        self.kinds: dict[str, Kind] = {name: Kind() for name in MIX}
        self.rpc_id = 0

    async def one(self, kind: str, scheduled: float) -> None:
        stats = self.kinds[kind]
        try:
            status, retry_after, failure = await getattr(self, kind)()
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            status, retry_after, failure = 0, None, f"{type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - scheduled
        if status in (429, 503) and retry_after is not None:
            stats.shed += 1
            stats.shed_latencies.append(elapsed)
        elif failure:
            stats.errors += 1
            stats.sample_error = stats.sample_error or failure
        else:
            stats.latencies.append(elapsed)

    async def get(self, path: str, headers: dict[str, str] | None = None,
                  ok: tuple[int, ...] = (200,)) -> tuple[int, str | None, str]:
        async with self.session.get(self.base + path, headers=headers) as response:
            await response.read()
            failure = "" if response.status in ok else f"HTTP {response.status} on {path}"
            return response.status, response.headers.get("Retry-After"), failure

    async def embed(self) -> tuple[int, str | None, str]:
        return await self.get(f"/embed/{self.track_id}")

    async def oembed(self) -> tuple[int, str | None, str]:
        url = f"{self.base}/embed/{self.track_id}"
        return await self.get(f"/oembed?url={url}")

    async def health(self) -> tuple[int, str | None, str]:
        return await self.get("/health/live")

    async def stream(self) -> tuple[int, str | None, str]:
        start = self.rng.randrange(0, 9 * RANGE)
        headers = {"Range": f"bytes={start}-{start + RANGE - 1}"}
        return await self.get(f"/audio/{self.track_id}/stream", headers, ok=(206,))

    async def search(self) -> tuple[int, str | None, str]:
        self.rpc_id += 1
        body = {"jsonrpc": "2.0", "id": self.rpc_id, "method": "tools/call",
                "params": {"name": "search_library", "arguments": {"query": self.rng.choice(WORDS), "limit": 20}}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
                   "MCP-Protocol-Version": "2025-06-18"}
        async with self.session.post(self.base + "/mcp", json=body, headers=headers) as response:
            text = await response.text()
            if response.status != 200:
                return response.status, response.headers.get("Retry-After"), f"HTTP {response.status} on /mcp"
            payload = next((line[5:] for line in text.split("\n") if line.startswith("data:")), text)
            result = json.loads(payload).get("result", {})
            if result.get("isError"):
                code = (result.get("structuredContent") or {}).get("error", {}).get("code", "")
                return (503, "1", "") if code == "OVERLOADED" else (200, None, f"isError: {text[:200]}")
            return 200, None, ""


async def offered_load(base: str, track_id: str, rate: float, seconds: float) -> tuple[Client, float]:
    """Start ``rate * seconds`` requests at their scheduled times; wait for them all."""
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        client = Client(base, track_id, session)
        names, weights = list(MIX), list(MIX.values())
        tasks: list[asyncio.Task[None]] = []
        start = time.perf_counter() + 0.2
        total = int(rate * seconds)
        for i in range(total):
            scheduled = start + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            kind = client.rng.choices(names, weights)[0]
            tasks.append(asyncio.create_task(client.one(kind, scheduled)))
        await asyncio.gather(*tasks)
        return client, time.perf_counter() - start


class MemorySeries:
    """``RssAnon`` of the server every ``every_s`` seconds of a round, read on a thread: a long round
    (a soak) shows whether memory levels off once pools and caches are warm or keeps growing."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.wait(self.every_s):
            self.samples.append(round(rss_anon_mb(self.pid), 1))

    def __enter__(self) -> MemorySeries:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def run_round(args: argparse.Namespace, track_id: str, rate: float) -> dict[str, object]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    extra = dict(item.split("=", 1) for item in args.server_env)
    env = server_env(args.data, args.src, {"EMBED_BASE_URL": base, **extra})
    proc = subprocess.Popen(
        [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)],
        cwd=args.data, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.nice(args.nice)) if args.nice else None)  # noqa: PLW1509
    try:
        wait_live(f"{base}/health/live", proc)
        asyncio.run(offered_load(base, track_id, 30, 2))  # warm-up: caches, pools, imports
        load = os.getloadavg()[0]
        mem_before, cpu_before, own_before = rss_anon_mb(proc.pid), cpu_seconds(proc.pid), own_cpu()
        with MemorySeries(proc.pid, every_s=60.0) as series:
            client, wall = asyncio.run(offered_load(base, track_id, rate, args.seconds))
        mem_after, cpu_after, own_after = rss_anon_mb(proc.pid), cpu_seconds(proc.pid), own_cpu()
    finally:
        stop(proc)
    row: dict[str, object] = {
        "rate": rate, "seconds": args.seconds, "wall_s": round(wall, 1), "load1": round(load, 2),
        "rss_anon_mb_before": round(mem_before, 1), "rss_anon_mb_after": round(mem_after, 1),
        "rss_anon_mb_each_minute": series.samples,
        "server_cpu_s": round(cpu_after - cpu_before, 2), "client_cpu_s": round(own_after - own_before, 2),
        "nice": args.nice,
    }
    for name, stats in client.kinds.items():
        row[name] = {
            "ok": len(stats.latencies), "errors": stats.errors, "shed": stats.shed,
            "p50_ms": round(pct(stats.latencies, 50) * 1000, 1), "p95_ms": round(pct(stats.latencies, 95) * 1000, 1),
            "p99_ms": round(pct(stats.latencies, 99) * 1000, 1),
            "shed_p95_ms": round(pct(stats.shed_latencies, 95) * 1000, 1), "sample_error": stats.sample_error,
        }
    served = sum(len(k.latencies) + k.shed + k.errors for k in client.kinds.values())
    row["cpu_ms_per_request"] = round(row["server_cpu_s"] / max(1, served) * 1000, 2)  # type: ignore[operator]
    return row


def table(rows: list[dict[str, object]]) -> str:
    head = ("| offered | load1 | errors | shed | embed p95 | oEmbed p95 | health p95 | 1 MiB range p95 "
            "| MCP search p95 | shed p95 | RssAnon growth | server CPU/request |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for row in rows:
        kinds = {name: row[name] for name in MIX}
        errors = sum(k["errors"] for k in kinds.values())  # type: ignore[index]
        shed = sum(k["shed"] for k in kinds.values())  # type: ignore[index]
        shed_p95 = max((k["shed_p95_ms"] for k in kinds.values() if k["shed"]), default=float("nan"))  # type: ignore[index]
        growth = row["rss_anon_mb_after"] - row["rss_anon_mb_before"]  # type: ignore[operator]
        cells = [f"{kinds[n]['p95_ms']} ms" for n in ("embed", "oembed", "health", "stream", "search")]  # type: ignore[index]
        lines.append(f"| {row['rate']:g} req/s × {row['seconds']:g} s | {row['load1']} | {errors} | {shed} | "
                     + " | ".join(cells) + f" | {shed_p95} ms | {growth:+.1f} MB | {row['cpu_ms_per_request']} ms |")
    for row in rows:
        if row["rss_anon_mb_each_minute"]:
            minutes = " -> ".join(f"{mb:g}" for mb in row["rss_anon_mb_each_minute"])  # type: ignore[attr-defined]
            lines.append(f"\n{row['rate']:g} req/s: RssAnon MB after warm-up {row['rss_anon_mb_before']}, "
                         f"then each minute {minutes}, at the end {row['rss_anon_mb_after']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="library directory (seeded on first use)")
    parser.add_argument("--tracks", type=int, default=20_000, help="synthetic tracks to seed")
    parser.add_argument("--rates", default="150,300,600", help="offered rates, requests/s, one round each")
    parser.add_argument("--seconds", type=float, default=20, help="length of each round")
    parser.add_argument("--src", type=Path, help="run the server from this src/ directory (a baseline checkout)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the server (e.g. WEB_WORKERS=2)")
    parser.add_argument("--nice", type=int, default=0,
                        help="scheduling priority of server and client (negative: ahead of other work; root)")
    parser.add_argument("--mix", help="the mix instead of the default, e.g. search=1 or embed=1,oembed=1")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.mix:
        chosen = {name: float(weight) for name, _, weight in (part.partition("=") for part in args.mix.split(","))}
        unknown = set(chosen) - set(MIX)
        if unknown:
            parser.error(f"unknown kinds {sorted(unknown)}; known: {', '.join(MIX)}")
        MIX.clear()
        MIX.update({name: chosen.get(name, 0.0) for name in ("search", "embed", "oembed", "stream", "health")})
    if args.nice:
        os.nice(args.nice)
    args.data = args.data.resolve()
    track_id = ensure_library(args.data, args.tracks, args.src)
    rows = [run_round(args, track_id, float(rate)) for rate in args.rates.split(",")]
    print(f"Machine: {machine()}; server: {args.src or 'this checkout'} {' '.join(args.server_env)}")
    print(table(rows))
    for row in rows:
        print(f"  {row['rate']:g} req/s: wall {row['wall_s']} s, server CPU {row['server_cpu_s']} s, "
              f"client CPU {row['client_cpu_s']} s")
    for row in rows:
        for name in MIX:
            if row[name]["sample_error"]:  # type: ignore[index]
                print(f"  {row['rate']:g} req/s {name}: first error: {row[name]['sample_error']}")  # type: ignore[index]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
