"""How long a ``loist`` command takes as a whole process, start-up included.

Three measurements, each a whole ``python -m loist ...`` process timed from outside (wall clock and
the CPU seconds the kernel charged to it, from ``getrusage(RUSAGE_CHILDREN)``):

- ``list`` on an existing library (a few tracks, schema current);
- ``list`` on a fresh library (a new folder each run: creating the SQLite file and its schema);
- ``search`` on the existing library (the search code is imported by the commands that search);
- ``ingest`` of a folder of 200 small WAV files into a fresh library.

With ``--baseline SRC`` (a ``src`` folder of another version of loist, e.g. from ``git archive``)
each measurement alternates the two versions run by run (A B A B ...), with the same interpreter
and packages, so a machine whose load drifts slows both alike. Medians are printed as a Markdown
table for docs/benchmarks.md, with the machine and its load average at the start and the end, and
the ratio of the CPU medians (this version / baseline).

    .venv/bin/python bench/cli_startup.py [--runs 10] [--baseline /tmp/loist-before/src]
"""

from __future__ import annotations

import argparse
import io
import math
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

SRC = Path(__file__).resolve().parents[1] / "src"


def wav_bytes(index: int) -> bytes:
    """A 0.2 s mono tone, different for every index (so no two files are the same track)."""
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * (220 + index) * i / rate))) for i in range(rate // 5)
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)
    return buffer.getvalue()


def timed(src: Path, args: list[str], data_dir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``python -m loist ARGS`` with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src), "LOIST_DATA_DIR": str(data_dir)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "loist", *args], env=env, capture_output=True, timeout=600)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"loist {' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(versions: dict[str, Path], runs: int, one: Callable[[Path, int], tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """Median (wall, cpu) per version, the versions alternating run by run after one warm-up each."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in versions}
    for src in versions.values():
        one(src, -1)  # warm-up: bytecode caches, the page cache
    for i in range(runs):
        for name, src in versions.items():
            samples[name].append(one(src, i))
    return {name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s)) for name, s in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--baseline", type=Path, help="the src folder of the version to compare with")
    args = parser.parse_args()
    versions = {"this version": SRC}
    if args.baseline:
        versions = {"baseline": args.baseline.resolve(), **versions}

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="loist-bench-") as tmp:
        root = Path(tmp)
        music = root / "music"
        music.mkdir()
        for i in range(args.files):
            (music / f"tone-{i:04d}.wav").write_bytes(wav_bytes(i))
        existing = {name: root / f"existing-{n}" for n, name in enumerate(versions)}
        for name, src in versions.items():  # a small library, migrated by its own version
            for i in range(3):
                timed(src, ["ingest", str(music / f"tone-{i:04d}.wav")], existing[name])

        def fresh(tag: str) -> Callable[[Path, int], Path]:
            counter = iter(range(10**6))
            return lambda src, i: root / f"{tag}-{next(counter)}"

        new_list, new_ingest = fresh("fresh-list"), fresh("fresh-ingest")
        by_src = {src: name for name, src in versions.items()}
        results = {
            "`loist list`, existing library": measure(
                versions, args.runs, lambda src, i: timed(src, ["list"], existing[by_src[src]])),
            "`loist search tone`, existing library": measure(
                versions, args.runs, lambda src, i: timed(src, ["search", "tone"], existing[by_src[src]])),
            "`loist list`, fresh library": measure(
                versions, args.runs, lambda src, i: timed(src, ["list"], new_list(src, i))),
            f"`loist ingest` of {args.files} WAV files, fresh library": measure(
                versions, max(3, args.runs // 3), lambda src, i: timed(src, ["ingest", str(music)], new_ingest(src, i))),
        }

    load = os.getloadavg()
    print(f"machine: {machine()}; load average {load_before:.1f} at the start, {load[0]:.1f} at the end; "
          f"{args.runs} runs each")
    print()
    ratio = len(versions) == 2
    print("| command | " + " | ".join(f"{name}: wall s | {name}: CPU s" for name in versions)
          + (" | CPU this/baseline |" if ratio else " |"))
    print("|---|" + "---:|---:|" * len(versions) + ("---:|" if ratio else ""))
    for label, by_version in results.items():
        cells = " | ".join(f"{wall:.3f} | {cpu:.3f}" for wall, cpu in by_version.values())
        if ratio:
            (_, before), (_, after) = by_version.values()
            cells += f" | {after / before:.2f}"
        print(f"| {label} | {cells} |")


if __name__ == "__main__":
    main()
