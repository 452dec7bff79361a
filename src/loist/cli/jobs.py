"""Commands about background jobs: ``worker`` runs them, ``jobs`` lists and retries them.

Test hook of ``loist worker`` (read only when set): ``LOIST_TEST_JOB_GATE_FD=<fd>``, an inherited
file descriptor (the read end of a pipe the test holds). Each job, once its blob is written and
before it is recorded, prints a ``{"event": "paused"}`` line and waits for one byte on it: a test
kills the process there, mid-job, with the job leased and its blob written but not recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from loist.cli import render
from loist.cli.render import JsonOpt
from loist.cli.runner import on_library
from loist.errors import InvalidArgument

if TYPE_CHECKING:
    from loist.library.jobs import Outcome
    from loist.library.service import Library

GATE_FD = "LOIST_TEST_JOB_GATE_FD"
STATES = ("queued", "running", "done", "dead")

jobs_app = typer.Typer(help="Background jobs (waveforms, web renditions): list and retry.", no_args_is_help=True)


def worker(
    once: Annotated[bool, typer.Option("--once", help="Run the jobs due now, then exit (a drain).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run background jobs (waveforms, web renditions) until interrupted; for deployments that run
    them apart from `loist serve` (JOBS_WORKERS=0 there). One line per finished job."""

    async def go(library: Library) -> int:
        from loist.library.jobs import Worker

        job_worker = Worker(library.settings, library.derived)
        if fd := os.environ.get(GATE_FD):
            job_worker.before_finish = _gate(int(fd), as_json)

        def report(outcome: Outcome) -> None:
            _print_outcome(outcome, as_json)

        if once:
            count = 0
            while (outcome := await job_worker.run_once()) is not None:
                report(outcome)
                count += 1
            return count
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        _event({"event": "working", "workers": 1}, "worker: running jobs (Ctrl-C stops)", as_json)
        await job_worker.run(stop, on_outcome=report)
        return 0

    on_library(as_json, go)


def _refuse(exc: InvalidArgument, as_json: bool) -> NoReturn:
    render.error(exc, as_json)
    raise typer.Exit(exc.exit_code)


def _gate(fd: int, as_json: bool) -> Callable[[Any], Awaitable[None]]:
    async def wait(claim: Any) -> None:  # a loist.catalog.jobs.Claim
        _event({"event": "paused", "job": claim.id, "attempts": claim.attempts}, f"paused before recording job {claim.id}", as_json)
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(fd, lambda: readable.done() or readable.set_result(None))
        try:
            await readable
        finally:
            loop.remove_reader(fd)
        os.read(fd, 1)

    return wait


def _event(data: dict[str, object], text: str, as_json: bool) -> None:
    print(json.dumps(data) if as_json else text, flush=True)


def _print_outcome(outcome: Outcome, as_json: bool) -> None:
    line = f"job {outcome.job_id} {outcome.kind} of {outcome.track_id}: {outcome.state} (attempt {outcome.attempts})"
    if outcome.error:
        line += f": {outcome.error}"
    _event({"event": "job", **outcome.to_dict()}, line, as_json)


@jobs_app.command("list")
def list_jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state: queued, running, done, dead.")] = None,
    track: Annotated[str | None, typer.Option(help="Only the jobs of this track id.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many, newest first.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """List jobs, newest first, with a count per state."""
    if state is not None and state not in STATES:
        _refuse(InvalidArgument(f"--state must be one of {', '.join(STATES)}, not {state!r}"), as_json)

    async def go(library: Library) -> dict[str, object]:
        from loist.model import parse_track_id

        track_id = parse_track_id(track) if track else None
        found = await library.catalog.jobs.list(state=state, track_id=track_id, limit=limit)
        return {"counts": await library.catalog.jobs.counts(), "items": [job.model_dump(mode="json") for job in found]}

    result = on_library(as_json, go)
    if as_json:
        print(json.dumps(result))
        return
    counts = result["counts"]
    assert isinstance(counts, dict) and isinstance(result["items"], list)
    print("  ".join(f"{name}: {n}" for name, n in counts.items()))
    for job in result["items"]:
        error = f"  {job['last_error']}" if job["last_error"] else ""
        print(f"{job['id']:>6}  {job['kind']:<9} {job['state']:<7} attempts {job['attempts']}  track {job['track_id']}{error}")


@jobs_app.command("retry")
def retry_jobs(
    ids: Annotated[list[int] | None, typer.Argument(help="Job ids to queue again (any state but running).")] = None,
    dead: Annotated[bool, typer.Option("--dead", help="Queue every dead job again (a replay).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Queue jobs again, due now, with their attempts reset."""
    if not ids and not dead:
        _refuse(InvalidArgument("name job ids to retry, or --dead for every dead job"), as_json)

    async def go(library: Library) -> int:
        from loist.library.jobs import utcnow

        return await library.catalog.jobs.retry(utcnow(), ids=ids or (), dead=dead)

    queued = on_library(as_json, go)
    print(json.dumps({"queued": queued}) if as_json else f"{queued} job(s) queued again", file=sys.stdout)
