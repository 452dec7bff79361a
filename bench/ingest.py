"""Ingest benchmark (issue #2 item 9).

1. Bulk ingest of N (default 1,000) ffmpeg-made, tagged MP3s from a local folder into a fresh
   embedded library (SQLite + local folder), in files/s, next to a plain mutagen read loop over the
   same files in the same run (the floor any importer pays).
2. Peak memory (RSS) of a process that ingests a 500 MB WAV from a loopback HTTP URL.

    .venv/bin/python bench/ingest.py [--files 1000] [--wav-mb 500] [--runs 3]

Prints a Markdown table to paste into docs/benchmarks.md. Targets on the 2-core machine: at least
1,000 files/s, and peak RSS under 200 MB for the 500 MB file.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import json
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mutagen
from mutagen.id3 import ID3, TALB, TCON, TIT2, TPE1, TRCK, TYER

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402


def make_mp3s(folder: Path, n: int) -> list[Path]:
    """One 2 s MP3 from ffmpeg, then N copies each with distinct ID3 tags (so distinct content)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "_base.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=2",
         "-ac", "2", "-b:a", "128k", str(base)],
        check=True,
    )
    files = []
    genres = ["Rock", "Jazz", "Electronic", "Folk", "Hip-Hop", "Classical"]
    for i in range(n):
        dest = folder / f"{i:05d}.mp3"
        shutil.copyfile(base, dest)
        tags = ID3()
        tags.add(TIT2(encoding=3, text=f"Song number {i}"))
        tags.add(TPE1(encoding=3, text=f"Artist {i % 97}"))
        tags.add(TALB(encoding=3, text=f"Album {i % 211}"))
        tags.add(TCON(encoding=3, text=genres[i % len(genres)]))
        tags.add(TYER(encoding=3, text=str(1960 + i % 60)))
        tags.add(TRCK(encoding=3, text=f"{i % 12 + 1}/12"))
        tags.save(dest)
        files.append(dest)
    base.unlink()
    return files


def mutagen_loop(files: list[Path]) -> float:
    started = time.perf_counter()
    for path in files:
        f = mutagen.File(path)
        assert f is not None and f.info.length > 0
    return len(files) / (time.perf_counter() - started)


async def loist_ingest(folder: Path, data_dir: Path) -> tuple[float, int]:
    from loist.config import Settings
    from loist.library.service import Library

    settings = Settings(data_dir=data_dir, _env_file=None)
    lib = await Library.open(settings)
    try:
        started = time.perf_counter()
        ok = 0
        async for outcome in lib.ingest_many([str(folder)]):
            ok += outcome.ok and not outcome.skipped
        elapsed = time.perf_counter() - started
    finally:
        await lib.close()
    return ok / elapsed, ok


def make_wav(path: Path, megabytes: int) -> None:
    """A PCM WAV of about ``megabytes`` MB written in chunks (never in memory)."""
    rate, channels, width = 44100, 2, 2
    frames_bytes = megabytes * 1024 * 1024
    with path.open("wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + frames_bytes) + b"WAVE")
        f.write(b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * channels * width, channels * width, width * 8))
        f.write(b"data" + struct.pack("<I", frames_bytes))
        chunk = (bytes(range(256)) * 4096)  # 1 MiB of a sawtooth, not silence
        for _ in range(megabytes):
            f.write(chunk)


def serve_folder(folder: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


CHILD = r"""
import asyncio, json, resource, sys, time
from loist.config import Settings
from loist.library.service import Library

async def main():
    s = Settings(data_dir=sys.argv[2], allow_private_urls=True, max_file_size_mb=2048, _env_file=None)
    lib = await Library.open(s)
    t = time.perf_counter()
    track = await lib.ingest_url(sys.argv[1])
    elapsed = time.perf_counter() - t
    await lib.close()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_rss_mb": peak_kb / 1024, "seconds": elapsed, "size": track.size_bytes,
                      "duration_s": track.audio.duration_s}))

asyncio.run(main())
"""


def wav_peak_rss(work: Path, megabytes: int) -> dict[str, float]:
    src = work / "wav"
    src.mkdir()
    make_wav(src / "big.wav", megabytes)
    server, port = serve_folder(src)
    try:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, f"http://127.0.0.1:{port}/big.wav", str(work / "wavlib")],
            check=True, capture_output=True, text=True,
        )
    finally:
        server.shutdown()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--wav-mb", type=int, default=500)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="loist-bench-") as tmp:
        work = Path(tmp)
        files = make_mp3s(work / "mp3", args.files)
        mutagen_rates, loist_rates = [], []
        for run in range(args.runs):
            mutagen_rates.append(mutagen_loop(files))
            rate, ok = asyncio.run(loist_ingest(work / "mp3", work / f"lib{run}"))
            assert ok == args.files, f"only {ok} of {args.files} ingested"
            loist_rates.append(rate)
        wav = wav_peak_rss(work, args.wav_mb) if args.wav_mb else None

    best = max(loist_rates)
    print(f"machine: {machine()}")
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n")
    print("| measure | result | target |")
    print("|---|---|---|")
    print(f"| bulk ingest, {args.files} tagged MP3s, SQLite + local folder (best of {args.runs}) | "
          f"**{best:,.0f} files/s** (runs: {', '.join(f'{r:,.0f}' for r in loist_rates)}) | >= 1,000 files/s |")
    print(f"| plain mutagen read loop, same files, same run (best of {args.runs}) | "
          f"{max(mutagen_rates):,.0f} files/s | (floor) |")
    if wav:
        print(f"| peak RSS ingesting a {args.wav_mb} MB WAV from a loopback URL | **{wav['peak_rss_mb']:.0f} MB** "
              f"({wav['seconds']:.1f} s, {wav['size'] / wav['seconds'] / 2**20:.0f} MB/s) | < 200 MB |")


if __name__ == "__main__":
    main()
