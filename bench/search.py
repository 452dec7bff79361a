"""Search latency benchmark (issue #4 item 5).

Seeds a library of N synthetic tracks (``loist.library.synthetic``) once per engine and size (kept and
reused: SQLite files under ``--data-dir``, PostgreSQL databases named ``loist_bench_<N>``), then
times a fixed mix of 200 searches (plain words, prefixes, typos, filters, ranges, sorts, deep pages,
non-Latin and punctuated names) and prints p50 / p95 / p99 per engine and per kind.

    .venv/bin/python bench/search.py --engine sqlite --engine postgresql --tracks 100000
    .venv/bin/python bench/search.py --engine postgresql --tracks 1000000

``--transport inprocess`` (default) calls ``Catalog.search`` directly. ``--transport mcp-http``
starts ``loist serve --transport http`` as a child process on a free loopback port against the same
seeded database (``DATABASE_URL``, ``LOIST_DATA_DIR``), and calls the tool ``search_library`` through
the official MCP client (streamable HTTP, one session for the whole run): the time includes the
JSON-RPC round trip, validation, the tool's result shape and the HTTP stack.

Targets on the 2-core machine: p95 <= 10 ms in-process at 100K on both engines, <= 50 ms at 1M on
PostgreSQL. Results go in docs/benchmarks.md (section "Search").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
from common import machine
from psycopg import sql

from loist.catalog import Catalog
from loist.catalog.migrate import upgrade
from loist.library.synthetic import GENRES, SPECIAL_ARTISTS, WORDS, generate_tracks
from loist.model import RangeFilter, SearchFilters, SearchRequest, SearchResult

PG_SERVER = os.environ.get("LOIST_BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
BATCH = 2000
SEED = 42


# --- the query mix ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    kind: str
    request: SearchRequest
    pages: int = 1  # > 1: follow the cursor, time only the last page


def _typo(word: str, rng: random.Random) -> str:
    i = rng.randrange(1, len(word) - 1)
    op = rng.choice(("drop", "swap", "replace"))
    if op == "drop":
        return word[:i] + word[i + 1 :]
    if op == "swap":
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + rng.choice("aeiourstn") + word[i + 1 :]


def query_mix(seed: int = SEED) -> list[Case]:
    """The fixed 200-search mix (same list every run)."""
    rng = random.Random(seed)  # noqa: S311
    long_words = [w for w in WORDS if len(w) >= 6]
    cases: list[Case] = []

    def add(kind: str, count: int, make: Callable[[], SearchRequest], pages: int = 1) -> None:
        cases.extend(Case(kind, make(), pages) for _ in range(count))

    add("word", 30, lambda: SearchRequest(query=rng.choice(WORDS) + " "))
    add("words", 20, lambda: SearchRequest(query=f"{rng.choice(WORDS)} {rng.choice(WORDS)} "))
    add("prefix", 25, lambda: SearchRequest(query=rng.choice(long_words)[: rng.randint(2, 5)]))
    add("prefix2", 10, lambda: SearchRequest(query=f"{rng.choice(WORDS)} {rng.choice(long_words)[:3]}"))
    add("typo", 20, lambda: SearchRequest(query=_typo(rng.choice(long_words), rng) + " "))
    add("names", 10, lambda: SearchRequest(query=rng.choice(SPECIAL_ARTISTS + ["acdc", "rem", "sigur ros"])))
    add(
        "filters",
        20,
        lambda: SearchRequest(
            query=rng.choice(["", rng.choice(WORDS)]),
            filters=SearchFilters(
                genre=rng.sample(GENRES, rng.randint(1, 2)),
                format=rng.sample(["mp3", "flac", "m4a", "ogg"], rng.randint(1, 2)),
                year=RangeFilter(min=(y := rng.randint(1950, 2015)), max=y + rng.randint(0, 15)),
            ),
        ),
    )
    add(
        "ranges",
        20,
        lambda: SearchRequest(
            query=rng.choice(
                [
                    f"year:{(y := rng.randint(1950, 2020))}..{y + 9}",
                    "year:2000..",
                    "duration:..4:30",
                    "duration:120..300",
                    "added:-7d..",
                    f"{rng.choice(WORDS)} year:{rng.randint(195, 202)}0s",
                    f"{rng.choice(WORDS)} duration:10:00..",
                ]
            )
        ),
    )
    add(
        "sort",
        25,
        lambda: SearchRequest(
            query=rng.choice(["", rng.choice(WORDS)]),
            sort=rng.choice(["title", "artist", "album", "year", "duration", "added"]),
            order=rng.choice(["asc", "desc"]),
        ),
    )
    add(
        "deep",
        20,
        lambda: SearchRequest(
            query=rng.choice(["", rng.choice(WORDS), "genre:rock"]),
            sort=rng.choice(["relevance", "title", "added", "year"]),
            limit=20,
        ),
        pages=10,
    )
    assert len(cases) == 200, len(cases)
    return cases


def shapes_mix(seed: int = SEED) -> list[Case]:
    """200 searches of the six shapes people type most, as they type them (no trailing space, so
    the last word is still a prefix): a word; two words; a word and a year range; ``genre:rock`` and
    a word; a word and a duration range; a two-letter prefix."""
    rng = random.Random(seed)  # noqa: S311
    shapes: list[tuple[str, int, Callable[[], str]]] = [
        ("word", 34, lambda: rng.choice(WORDS)),
        ("two words", 34, lambda: f"{rng.choice(WORDS)} {rng.choice(WORDS)}"),
        ("word + year", 33, lambda: f"{rng.choice(WORDS)} year:1990..1999"),
        ("genre + word", 33, lambda: f"genre:rock {rng.choice(WORDS)}"),
        ("word + duration", 33, lambda: f"{rng.choice(WORDS)} duration:..3:00"),
        ("prefix 2", 33, lambda: rng.choice(WORDS)[:2]),
    ]
    cases = [Case(kind, SearchRequest(query=make())) for kind, count, make in shapes for _ in range(count)]
    assert len(cases) == 200, len(cases)
    return cases


MIXES: dict[str, Callable[[], list[Case]]] = {"round3": query_mix, "shapes": shapes_mix}


# --- seeding ----------------------------------------------------------------------------------


def _pg_exists(name: str) -> bool:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def _pg_create(name: str, drop: bool) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        if drop:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


async def library_url(engine: str, tracks: int, data_dir: Path, reseed: bool, pg_prefix: str = "loist_bench") -> str:
    """The URL of a seeded library (seeding it first when missing or ``reseed``)."""
    if engine == "sqlite":
        path = data_dir / f"search-{tracks}.db"
        url = f"sqlite:///{path}"
        ready = path.exists() and not reseed and (path.with_suffix(".ready")).exists()
        if not ready:
            for leftover in path.parent.glob(path.name + "*"):
                leftover.unlink()
            path.with_suffix(".ready").unlink(missing_ok=True)
            data_dir.mkdir(parents=True, exist_ok=True)
            await seed(url, tracks)
            path.with_suffix(".ready").touch()
        return url
    name = f"{pg_prefix}_{tracks}"
    url = f"{PG_SERVER}/{name}"
    if reseed or not _pg_exists(name):
        _pg_create(name, drop=True)
        await seed(url, tracks)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
    return url


async def seed(url: str, tracks: int) -> None:
    await upgrade(url)
    started = time.perf_counter()
    async with Catalog.from_url(url) as catalog:
        generator = generate_tracks(tracks, seed=SEED)
        done = 0
        while batch := list(itertools.islice(generator, BATCH)):
            await catalog.add_many(batch)
            done += len(batch)
            if done % 100_000 == 0:
                print(f"  seeded {done:,} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    print(f"seeded {tracks:,} tracks into {url} in {time.perf_counter() - started:.1f} s", file=sys.stderr)


# --- running -----------------------------------------------------------------------------------

Runner = Callable[[SearchRequest], Awaitable[SearchResult]]


@contextlib.asynccontextmanager
async def make_runner(transport: str, catalog: Catalog, url: str) -> AsyncIterator[Runner]:
    """How one search is sent: in-process, or through the MCP HTTP endpoint of a real server."""
    if transport == "inprocess":
        yield catalog.search
        return
    async with mcp_http_runner(url) as run:
        yield run


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def mcp_http_runner(url: str) -> AsyncIterator[Runner]:
    """Start ``loist serve --transport http`` on the seeded library; call ``search_library``."""
    from mcp import Client

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="loist-bench-") as data_dir:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "LOIST_DATA_DIR": data_dir,
            "EMBED_BASE_URL": base,
            "LOG_LEVEL": "WARNING",
            # One client sends every search: the per-client MCP rate limit (600 a minute by default)
            # would refuse the second round of the mix, timing the limiter instead of the search.
            "RATE_LIMITS_ENABLED": "false",
        }
        loist = Path(sys.executable).with_name("loist")
        command = [str(loist), "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
        server = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)  # noqa: S603
        try:
            await _wait_ready(base, server)
            async with Client(f"{base}/mcp") as client:

                async def run(request: SearchRequest) -> SearchResult:
                    arguments = request.model_dump(mode="json", exclude_defaults=True)
                    result = await client.call_tool("search_library", arguments)
                    data = result.structured_content
                    if result.is_error or data is None:
                        raise RuntimeError(f"search_library failed: {result.content}")
                    return SearchResult(
                        items=[],  # the hits were received and validated by the client; not needed here
                        total=data["total"],
                        total_relation=data.get("total_relation", "eq"),
                        next_cursor=data.get("next_cursor"),
                    )

                yield run
        finally:
            server.terminate()
            server.wait(timeout=30)


async def _wait_ready(base: str, server: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Poll ``/health/live`` until the server answers (a benchmark, not a test: polling is fine)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"loist serve exited with {server.returncode}")
            try:
                if (await http.get(f"{base}/health/live", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit(f"loist serve did not answer on {base} within {timeout_s:.0f} s")


def _is_child(pid: int) -> bool:
    """Whether ``pid`` is a child of this process (the ``loist serve`` it started)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
    except (OSError, ValueError, IndexError):
        return False


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def describe(case: Case) -> str:
    """One line naming a case: its kind, the request's non-default fields, and the page timed."""
    fields = case.request.model_dump(mode="json", exclude_defaults=True)
    return f"{case.kind}: {json.dumps(fields, ensure_ascii=False)}" + (f" page {case.pages}" if case.pages > 1 else "")


class CpuMeter:
    """CPU time spent on a search, in ms: this process's, plus that of the other processes serving it
    (the PostgreSQL backends of the library's database; the ``loist serve`` child), from
    ``/proc/<pid>/schedstat`` (nanoseconds on a CPU). Unlike the wall clock it does not count the
    time a process waits for a core, so it stays readable on a machine shared with other work."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    @staticmethod
    def _on_cpu(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return 0

    def now(self) -> int:
        return time.process_time_ns() + sum(self._on_cpu(pid) for pid in self.pids)

    def watch_postgres(self, url: str) -> None:
        """Watch every backend connected to the library's database (after the warm-up: the pool is open)."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (name,)
            ).fetchall()
        self.pids += [int(row[0]) for row in rows]


async def time_mix(run: Runner, cases: list[Case], cpu: CpuMeter | None = None) -> list[tuple[str, float, int, float]]:
    """(kind, wall ms, total, CPU ms) of each case."""
    cpu = cpu or CpuMeter()
    timings: list[tuple[str, float, int, float]] = []
    for case in cases:
        request = case.request
        for _ in range(case.pages - 1):  # walk to the deep page, untimed
            page = await run(request)
            if page.next_cursor is None:
                break
            request = request.model_copy(update={"cursor": page.next_cursor})
        cpu_started, started = cpu.now(), time.perf_counter()
        result = await run(request)
        wall = (time.perf_counter() - started) * 1000
        timings.append((case.kind, wall, result.total, (cpu.now() - cpu_started) / 1e6))
    return timings


async def bench(engine: str, tracks: int, args: argparse.Namespace) -> list[str]:
    url = await library_url(engine, tracks, args.data_dir, args.reseed, args.pg_prefix)
    cases = MIXES[args.mix]()
    timings: list[float] = []
    by_kind: dict[str, list[float]] = {}
    by_case: dict[int, list[float]] = {}
    cpu_by_kind: dict[str, list[float]] = {}
    cpu = CpuMeter()
    async with Catalog.from_url(url) as catalog:
        await catalog.ensure_schema()  # before a server starts: it refuses a database behind head
    async with Catalog.from_url(url) as catalog, make_runner(args.transport, catalog, url) as run:
        await time_mix(run, cases)  # warm-up: caches, prepared statements, page cache
        if engine == "postgresql":
            cpu.watch_postgres(url)
        if args.transport == "mcp-http":
            cpu.pids += [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _is_child(int(pid))]
        for _ in range(args.rounds):
            for index, (kind, ms, _total, cpu_ms) in enumerate(await time_mix(run, cases, cpu)):
                timings.append(ms)
                by_kind.setdefault(kind, []).append(ms)
                by_case.setdefault(index, []).append(ms)
                cpu_by_kind.setdefault(kind, []).append(cpu_ms)
    p = {q: percentile(timings, q) for q in (50, 95, 99)}
    lines = [
        f"| {engine} | {tracks:,} | {args.transport} | {args.mix} | {p[50]:.1f} | {p[95]:.1f} | {p[99]:.1f} | "
        f"{max(timings):.1f} |"
    ]
    kinds = " · ".join(f"{kind} {percentile(v, 50):.1f}/{percentile(v, 95):.1f}" for kind, v in by_kind.items())
    lines.append(f"|  | p50/p95 by kind (ms) | {kinds} | | | | | |")
    cpu_all = [ms for values in cpu_by_kind.values() for ms in values]
    cpu_kinds = " · ".join(
        f"{kind} {percentile(v, 50):.1f}/{percentile(v, 95):.1f}" for kind, v in cpu_by_kind.items()
    )
    lines.append(
        f"|  | CPU ms per search, p50/p95 | all {percentile(cpu_all, 50):.1f}/{percentile(cpu_all, 95):.1f} · "
        f"{cpu_kinds} | | | | | |"
    )
    lines.append(f"|  | load average after | {os.getloadavg()[0]:.2f} | | | | | |")
    if args.slowest:
        worst = sorted(by_case.items(), key=lambda item: -max(item[1]))[: args.slowest]
        lines.append(f"\nslowest {len(worst)} ({engine}, {tracks:,}), ms per round:")
        lines.extend(f"  {' / '.join(f'{ms:.1f}' for ms in times)}  {describe(cases[i])}" for i, times in worst)
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--tracks", action="append", type=int)
    parser.add_argument("--transport", choices=["inprocess", "mcp-http"], default="inprocess")
    parser.add_argument("--mix", choices=list(MIXES), default="round3", help="the 200-search mix to time")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over the 200-search mix")
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/loist-bench"))
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument(
        "--pg-prefix", default="loist_bench", help="PostgreSQL libraries are databases named PREFIX_<tracks>"
    )
    parser.add_argument("--seed-only", action="store_true", help="seed the libraries that are missing, time nothing")
    parser.add_argument("--slowest", type=int, default=0, help="also list the N slowest searches")
    args = parser.parse_args()
    engines = args.engine or ["sqlite", "postgresql"]
    sizes = args.tracks or [100_000]
    if args.seed_only:
        for tracks, engine in itertools.product(sizes, engines):
            await library_url(engine, tracks, args.data_dir, args.reseed, args.pg_prefix)
        return
    print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"Command: {' '.join(sys.argv)}\n")
    print("| engine | tracks | transport | mix | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    for tracks, engine in itertools.product(sizes, engines):
        for line in await bench(engine, tracks, args):
            print(line, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
