"""The temp-space budget across concurrent downloads (issue #16), against the loopback server.

A download held mid-body by the server (``http_server.gated``) keeps its reservation for as long
as the test wants; the test learns that the download has reserved from its progress callback
(called right after the reservation, before the body is read). Nothing waits on a clock.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from pathlib import Path

import pytest

from loist.errors import ErrorCode, FetchFailed, LoistError, RateLimited, SizeExceeded, Timeout
from loist.ingest.fetch import download, download_to_temp
from loist.ingest.tempspace import TempBudget
from tests.support.httpserver import LoopbackServer

KIB = 1024
BIG = bytes(range(256)) * 240  # 60 KiB
SMALL = bytes(range(256)) * 120  # 30 KiB


def options(server: LoopbackServer, **extra: object) -> dict[str, object]:
    return {"max_bytes": 1024 * KIB, "timeout_s": 10, "policy": server.policy, "resolver": server.resolver,
            "backoff_s": 0.001, **extra}



@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where download_to_temp makes its folders in these tests (to see that none is left)."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def reserved_signal() -> tuple[asyncio.Event, object]:
    """An event set by a download's first progress call: it has reserved and not read the body."""
    event = asyncio.Event()

    def progress(stage: str, done: int, total: int | None) -> None:
        if done == 0:
            event.set()

    return event, progress


async def test_a_download_that_would_exceed_the_budget_is_refused_while_another_holds_it(
    http_server: LoopbackServer, gate: threading.Event, tmp_path: Path
) -> None:
    budget = TempBudget(100 * KIB)
    held = http_server.gated("/held", BIG, gate)
    too_big = http_server.file("/too-big", BIG)
    fits = http_server.file("/fits", SMALL)
    reserved, progress = reserved_signal()
    first = budget.reservation()
    a = asyncio.create_task(download(held, tmp_path / "a", reservation=first, progress=progress,
                                     **options(http_server)))
    await reserved.wait()
    assert budget.used_bytes == len(BIG)  # its whole Content-Length, before the body

    second = budget.reservation()
    with pytest.raises(RateLimited) as info:
        await download(too_big, tmp_path / "b", reservation=second, **options(http_server))
    assert info.value.code is ErrorCode.RATE_LIMITED
    assert info.value.details["retryable"] is True
    assert info.value.details["in_use_bytes"] == len(BIG)
    assert not (tmp_path / "b").exists() and second.held == 0
    assert budget.used_bytes == len(BIG)  # the refusal held nothing

    third = budget.reservation()
    got = await download(fits, tmp_path / "c", reservation=third, **options(http_server))
    assert got.size == len(SMALL) and third.held == len(SMALL)
    assert budget.used_bytes == len(BIG) + len(SMALL)

    gate.set()
    done = await a
    assert done.size == len(BIG) and (tmp_path / "a").read_bytes() == BIG
    first.release()
    third.release()
    assert budget.used_bytes == 0
    # with the space free again, the refused download goes through
    with budget.reservation() as again:
        assert (await download(too_big, tmp_path / "b", reservation=again, **options(http_server))).size == len(BIG)
    assert budget.used_bytes == 0


async def test_a_body_without_length_is_counted_as_it_streams_and_cut_off_at_the_budget(
    http_server: LoopbackServer, gate: threading.Event, tmp_path: Path
) -> None:
    budget = TempBudget(100 * KIB)
    held = http_server.gated("/held", BIG, gate)
    unknown = http_server.file("/no-length", BIG, content_length=False)
    reserved, progress = reserved_signal()
    first = budget.reservation()
    a = asyncio.create_task(download(held, tmp_path / "a", reservation=first, progress=progress,
                                     **options(http_server)))
    await reserved.wait()

    second = budget.reservation()
    with pytest.raises(RateLimited):
        await download(unknown, tmp_path / "b", reservation=second, **options(http_server))
    assert not (tmp_path / "b").exists() and second.held == 0
    assert budget.used_bytes == len(BIG)
    gate.set()
    await a
    first.release()
    assert budget.used_bytes == 0


async def test_download_to_temp_holds_the_space_until_the_block_ends_then_removes_the_file(
    http_server: LoopbackServer, temp_root: Path
) -> None:
    budget = TempBudget(100 * KIB)
    url = http_server.file("/song", BIG)
    async with download_to_temp(url, budget=budget, **options(http_server)) as got:
        assert got.path.read_bytes() == BIG
        assert budget.used_bytes == len(BIG)  # analysis and storage happen while it is held
    assert not got.path.exists() and list(temp_root.iterdir()) == []
    assert budget.used_bytes == 0

    with pytest.raises(RuntimeError):
        async with download_to_temp(url, budget=budget, **options(http_server)) as got:
            raise RuntimeError("analysis failed")
    assert not got.path.exists() and list(temp_root.iterdir()) == []
    assert budget.used_bytes == 0


def _failures(server: LoopbackServer, gate: threading.Event) -> dict[str, tuple[str, dict, type[LoistError]]]:
    return {
        "size exceeded by Content-Length": (server.file("/big", BIG), {"max_bytes": 10 * KIB}, SizeExceeded),
        "size exceeded by the body": (
            server.file("/big-no-length", BIG, content_length=False), {"max_bytes": 10 * KIB}, SizeExceeded
        ),
        "timeout mid-body": (server.gated("/stalled", BIG, gate), {"timeout_s": 0.3}, Timeout),
        "client error": (server.status("/missing", 404), {}, FetchFailed),
        "broken body, retried": (server.file("/liar", SMALL, content_length=len(SMALL) * 2), {}, FetchFailed),
        "transient errors, retried": (server.status("/unavailable", 503), {}, FetchFailed),
    }


@pytest.mark.parametrize("case", [
    "size exceeded by Content-Length", "size exceeded by the body", "timeout mid-body", "client error",
    "broken body, retried", "transient errors, retried",
])
async def test_every_failure_releases_the_reservation_and_removes_the_file(
    http_server: LoopbackServer, gate: threading.Event, temp_root: Path, case: str
) -> None:
    budget = TempBudget(100 * KIB)
    url, extra, error = _failures(http_server, gate)[case]
    with pytest.raises(error):
        async with download_to_temp(url, budget=budget, **options(http_server, **extra)):
            pytest.fail("the download should have failed")
    assert budget.used_bytes == 0
    assert list(temp_root.iterdir()) == []


async def test_a_file_larger_than_the_whole_budget_is_size_exceeded(
    http_server: LoopbackServer, tmp_path: Path
) -> None:
    budget = TempBudget(40 * KIB)
    with pytest.raises(SizeExceeded) as info, budget.reservation() as held:
        await download(http_server.file("/big", BIG), tmp_path / "x", reservation=held, **options(http_server))
    assert info.value.details == {"needed_bytes": len(BIG), "budget_bytes": 40 * KIB}
    assert budget.used_bytes == 0


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        TempBudget(0)
