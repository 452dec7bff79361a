"""``loist backup`` and ``loist restore`` on an embedded library (SQLite + local folder).

Makes ``--tracks`` WAV files of ``--seconds`` seconds (44.1 kHz stereo 16-bit noise: ~176 KB a
second, every file new bytes), ingests them, then times ``backup_library`` and ``restore_library``
(restore includes the check of every track: its audio read back and hashed).

    .venv/bin/python bench/backup.py [--tracks 100] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from loist.config import Settings  # noqa: E402
from loist.library.backup import backup_library, restore_library  # noqa: E402
from loist.library.service import Library  # noqa: E402
from loist.library.synthetic import write_wav  # noqa: E402


async def run(root: Path, tracks: int, seconds: float) -> str:
    files = root / "files"
    files.mkdir()
    for n in range(tracks):
        with (files / f"take_{n:04d}.wav").open("wb") as handle:
            write_wav(handle, seconds, rate=44100, channels=2, sample_width=2, noise=True)
    audio_mb = sum(path.stat().st_size for path in files.iterdir()) / 1e6
    async with await Library.open(Settings(_env_file=None, data_dir=root / "source")) as library:  # type: ignore[call-arg]
        async for _ in library.ingest_many([str(files)]):
            pass
        started = time.perf_counter()
        made = await backup_library(library, root / "backup")
        backup_s = time.perf_counter() - started
    started = time.perf_counter()
    restored = await restore_library(Settings(_env_file=None, data_dir=root / "restored"), root / "backup")  # type: ignore[call-arg]
    restore_s = time.perf_counter() - started
    assert made.tracks == restored.tracks == tracks
    return f"| {tracks} | {audio_mb:.0f} MB | {backup_s:.2f} s | {restore_s:.2f} s |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loist-bench-backup-") as folder:
        row = asyncio.run(run(Path(folder), args.tracks, args.seconds))
    print(f"{machine()}; load average {os.getloadavg()[0]:.1f}")
    print("| tracks | audio | backup | restore (with the check of every track) |\n|---|---|---|---|")
    print(row)


if __name__ == "__main__":
    main()
