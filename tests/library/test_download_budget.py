"""URL ingests of one library share one temp-space budget (``DOWNLOAD_TEMP_BUDGET_MB``, issue #16).

The first ingest is held mid-download by the loopback server until the test lets it go; its
progress callback tells the test when it has reserved its space. Nothing waits on a clock.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from loist.config import Settings
from loist.errors import ErrorCode, RateLimited
from loist.library.service import Library
from loist.library.synthetic import wav_bytes as silent_wav
from loist.model import TrackStatus
from tests.support.httpserver import LoopbackServer


async def test_a_second_download_that_does_not_fit_beside_the_first_is_rate_limited(
    tmp_path: Path, http_server: LoopbackServer, gate: threading.Event
) -> None:
    first, second = silent_wav(3.5), silent_wav(3.6)  # 28 KB each; the budget is 0.05 MiB = 51 KiB
    settings = Settings(data_dir=tmp_path / "data", allow_private_urls=True, max_file_size_mb=0.05,
                        download_temp_budget_mb=0.05, _env_file=None)
    held_url = http_server.gated("/first.wav", first, gate)
    second_url = http_server.file("/second.wav", second)
    reserved = asyncio.Event()

    def progress(stage: str, done: int | None = None, total: int | None = None) -> None:
        if stage == "fetching" and done == 0:
            reserved.set()

    async with await Library.open(settings) as library:
        held = asyncio.create_task(library.ingest_url(held_url, progress=progress))
        await reserved.wait()
        with pytest.raises(RateLimited) as info:
            await library.ingest_url(second_url)
        assert info.value.code is ErrorCode.RATE_LIMITED
        failed = (await library.list(status=TrackStatus.FAILED)).items
        assert [(t.source.location, t.error_code) for t in failed] == [(second_url, "RATE_LIMITED")]

        gate.set()
        assert (await held).size_bytes == len(first)
        # the first file is stored and its temp space free again: the retry fits
        assert (await library.ingest_url(second_url)).size_bytes == len(second)
        assert await library.list(status=TrackStatus.FAILED) == type(await library.list())(items=[], next_cursor=None)
        assert library.pipeline._temp_budget.used_bytes == 0
