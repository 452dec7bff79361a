"""Two writer processes on one SQLite library (issue #16): tag updates while `loist seed` runs.

1. A fresh embedded library (SQLite + local folder) gets ``--base`` synthetic tracks to update.
2. Baseline: ``--updates`` tag updates through ``Library.update_tags`` (what a server does for
   ``update_metadata`` calls), nothing else writing: ``--concurrency`` updates always in flight
   (closed loop), or ``--rate`` updates a second arriving at random times (open loop).
3. Contended: ``loist seed --synthetic N`` starts in a second process; the same update loop runs
   here until the seed process exits.
4. After: the baseline again, alone, on the library the seed has grown (an update's own cost
   grows with the library, so this is what the contended phase is to be compared with).

Every update either succeeds or fails (``DATABASE_FAILED`` "database is locked" was the symptom);
the script prints failures, throughput and p50/p95/max latency for each phase, and the seed's own
time, as a Markdown table for docs/benchmarks.md.

    .venv/bin/python bench/sqlite_writers.py [--seed-tracks 60000] [--concurrency 1 | --rate 20]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from loist.config import Settings  # noqa: E402
from loist.errors import LoistError  # noqa: E402
from loist.library.service import Library  # noqa: E402

LOIST = Path(sys.executable).with_name("loist")


@dataclass
class Phase:
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    lock_waits_ms: list[float] = field(default_factory=list)  # updates that found the lock taken
    seconds: float = 0.0

    def row(self, name: str) -> str:
        lat = sorted(self.latencies_ms) or [0.0]
        done = len(self.latencies_ms)
        rate = done / self.seconds if self.seconds else 0.0
        waits = self.lock_waits_ms or [0.0]
        return (f"| {name} | {done + len(self.failures):,} | {len(self.failures)} | {rate:,.0f}/s | "
                f"{statistics.median(lat):.1f} | {_p95(lat):.1f} | {max(lat):,.1f} | "
                f"{len(self.lock_waits_ms):,} | {_p95(sorted(waits)):,.1f} | {max(waits):,.1f} |")


def _p95(values: list[float]) -> float:
    return values[min(len(values) - 1, int(len(values) * 0.95))]


class LockWaits(logging.Handler):
    """Collects the waits for SQLite's write lock that loist.catalog.engine logs at DEBUG."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.phase: Phase | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.phase is not None and record.msg.startswith("SQLite write lock taken after"):
            self.phase.lock_waits_ms.append(float(record.args[0]) * 1000)  # type: ignore[index]


async def update_loop(lib: Library, ids: list[str], phase: Phase, args: argparse.Namespace, stop) -> None:  # noqa: ANN001
    """Closed loop (``--concurrency`` updates always in flight) or, with ``--rate``, open loop:
    updates arriving at random (Poisson) times, each on its own, as a server's requests would."""
    rng = random.Random(7)  # noqa: S311 - benchmark data
    counter = 0

    async def one() -> None:
        nonlocal counter
        counter += 1
        started = time.perf_counter()
        try:
            await lib.update_tags(rng.choice(ids), {"comment": f"edit {counter}"})
        except LoistError as exc:
            phase.failures.append(exc.message[:120])
            return
        phase.latencies_ms.append((time.perf_counter() - started) * 1000)

    async def worker() -> None:
        while not stop():
            await one()

    started = time.perf_counter()
    if args.rate:
        pending: set[asyncio.Task[None]] = set()
        while not stop():
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(rng.expovariate(args.rate))  # pacing the arrivals, not waiting for a result
        await asyncio.gather(*pending)
    else:
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    phase.seconds = time.perf_counter() - started


async def run(args: argparse.Namespace) -> None:
    waits = LockWaits()
    engine_log = logging.getLogger("loist.catalog.engine")
    engine_log.setLevel(logging.DEBUG)
    engine_log.addHandler(waits)
    with tempfile.TemporaryDirectory(prefix="loist-bench-writers-") as tmp:
        data = Path(tmp) / "data"
        settings = Settings(data_dir=data, _env_file=None)
        async with await Library.open(settings) as lib:
            await lib.seed_synthetic(args.base, seed=99)
            ids = [str(t.id) for t in (await lib.list(limit=min(args.base, 1000))).items]

            baseline = waits.phase = Phase()
            await update_loop(lib, ids, baseline, args, _count_reached(baseline, args.updates))

            env = {**os.environ, "LOIST_DATA_DIR": str(data)}
            started = time.perf_counter()
            seeder = subprocess.Popen(  # noqa: S603 - fixed argv
                [str(LOIST), "seed", "--synthetic", str(args.seed_tracks), "--json"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            contended = waits.phase = Phase()
            await update_loop(lib, ids, contended, args, lambda: seeder.poll() is not None)
            out, err = seeder.communicate()
            seed_s = time.perf_counter() - started
            if seeder.returncode != 0:
                print(f"seed failed ({seeder.returncode}): {out}{err}", file=sys.stderr)
            after = waits.phase = Phase()  # the same updates on the grown library, alone again
            await update_loop(lib, ids, after, args, _count_reached(after, args.updates))

    print(f"Machine: {machine()}")
    print(f"Seed of {args.seed_tracks:,} synthetic tracks beside the updates: {seed_s:.1f} s "
          f"({args.seed_tracks / seed_s:,.0f} tracks/s), exit code {seeder.returncode}")
    mode = f"open loop, {args.rate:g} a second" if args.rate else f"closed loop, {args.concurrency} in flight"
    print(f"Updates: {mode}")
    print()
    print("| phase | updates | failed | throughput | p50 ms | p95 ms | max ms | waited for lock | wait p95 ms | wait max ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(baseline.row("updates alone"))
    print(contended.row(f"updates beside `loist seed --synthetic {args.seed_tracks}`"))
    print(after.row(f"updates alone after it ({args.base + args.seed_tracks:,} tracks)"))
    for message in sorted(set(contended.failures + baseline.failures))[:5]:
        print(f"\nfailure: {message}")


def _count_reached(phase: Phase, n: int):  # noqa: ANN202
    return lambda: len(phase.latencies_ms) + len(phase.failures) >= n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed-tracks", type=int, default=60_000)
    parser.add_argument("--base", type=int, default=500, help="tracks the updates pick from")
    parser.add_argument("--updates", type=int, default=1000, help="updates in the baseline phase")
    parser.add_argument("--concurrency", type=int, default=1, help="closed loop: updates in flight at once")
    parser.add_argument("--rate", type=float, default=0, help="open loop: updates arriving per second (Poisson)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
