"""Signals, ``kill -9`` and a database outage during a real ``loist ingest`` of many files.

Each test runs the console script as a subprocess over 48 small MP3s with batches of 8 and chunks
of 4, held after a batch by the test gate (tests/cli/ingestproc.py), so what it does to the
process always lands with committed and uncommitted work present. Afterwards the store's own
listing is compared with the keys the catalogue's rows reference: no blob without a row.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import psycopg
import pytest
from psycopg import sql

from loist.catalog.migrate import upgrade
from loist.config import Settings
from loist.library.service import Library
from loist.model import TrackStatus
from tests.cli.ingestproc import by_status, ingest_process, wait_gone
from tests.library.blobs import referenced_keys, stored_keys
from tests.support.audio import AudioFactory, distinct_mp3s
from tests.support.gcs import EMULATOR_ENV
from tests.support.pg import PG_SERVER
from tests.support.polling import apoll_until, poll_until

FILES = 48
BATCH = 8


def completed(lines: list[dict]) -> int:
    return len(by_status(lines).get("COMPLETED", []))


@pytest.fixture
def music(tmp_path: Path, audio_factory: AudioFactory) -> list[Path]:
    return distinct_mp3s(tmp_path / "music", FILES, audio_factory("mp3").read_bytes())


class Shape:
    """Where the ingest subprocess keeps its catalogue and blobs, and a library on the same, to look."""

    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.settings = settings
        self.env = env


@pytest.fixture(params=["sqlite-local", pytest.param("postgresql-gcs", marks=pytest.mark.postgres)])
async def shape(
    request: pytest.FixtureRequest, embedded: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Shape]:
    env = {**os.environ, "LOIST_DATA_DIR": str(embedded)}
    if request.param == "sqlite-local":
        yield Shape(Settings(data_dir=embedded, _env_file=None), env)
        return
    emulator = request.getfixturevalue("gcs_emulator")
    monkeypatch.setenv(EMULATOR_ENV, emulator)  # the CLI fixtures clear STORAGE_*; the bucket and our library need it
    bucket, url = request.getfixturevalue("gcs_bucket"), request.getfixturevalue("fresh_pg_url")
    await upgrade(url)
    cloud = {"DATABASE_URL": url, "STORAGE_BACKEND": "gcs", "GCS_BUCKET_NAME": bucket, EMULATOR_ENV: emulator}
    settings = Settings(data_dir=embedded, database_url=url, storage_backend="gcs", gcs_bucket_name=bucket, _env_file=None)
    yield Shape(settings, env | cloud)


async def open_library(shape: Shape) -> Library:
    return await Library.open(shape.settings, migrate=shape.settings.database_dialect == "sqlite")


@pytest.mark.parametrize(("signum", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False), (signal.SIGTERM, True)],
                         ids=["SIGINT-group", "SIGTERM", "SIGTERM-group"])
async def test_a_signal_stops_the_ingest_cleanly(shape: Shape, music: list[Path], signum: signal.Signals, group: bool) -> None:
    """Ctrl-C in a terminal signals the whole process group (the workers too); ``kill PID`` or an
    orchestrator signals the main process; a service manager may signal the whole group."""
    with ingest_process([str(music[0].parent)], shape.env) as ingest:
        ingest.read_until(lambda lines: completed(lines) >= BATCH, "the first batch's outcomes")
        library = await open_library(shape)
        try:
            committed = len(await referenced_keys(library))
            await apoll_until(lambda: len(stored_keys(library)) > committed, timeout_s=30,
                              what="blobs written for files not yet committed")  # what a careless stop would orphan
            family = ingest.family()
            if group:
                os.killpg(ingest.pid, signum)  # the ingest leads its own group (start_new_session)
            else:
                os.kill(ingest.pid, signum)
            code, lines, err = ingest.finish()

            assert code == 128 + signum, err
            assert f"{signum.name}: stopping" in err
            assert sorted(line["input"] for line in lines) == [str(p) for p in music]  # one line per file
            statuses = by_status(lines)
            assert set(statuses) == {"COMPLETED", "INTERRUPTED"} and completed(lines) == BATCH  # the first batch only
            assert {line["error"]["code"] for line in statuses["INTERRUPTED"]} == {"INTERRUPTED"}
            reported = {line["id"] for line in statuses["COMPLETED"]}
            assert {str(t.id) async for t in library.iter_tracks(status=None)} == reported
            assert stored_keys(library) == await referenced_keys(library)
            assert list(ingest.tmp.glob("loist-ingest-*")) == []  # the run's journals went with it
        finally:
            await library.close()
    wait_gone(family)  # the workers and the fork server ended with it


def test_kill_9_takes_the_analysis_workers_with_it(embedded: Path, music: list[Path]) -> None:
    """``kill -9`` leaves no process behind: each worker's parent, the fork server, exits when the
    killed process's end of its pipe closes, and the kernel then kills the workers (PDEATHSIG).
    (Process lifetime does not depend on the engines: the embedded shape only.)"""
    with ingest_process([str(music[0].parent)], {**os.environ, "LOIST_DATA_DIR": str(embedded)}) as ingest:
        ingest.read_until(lambda lines: completed(lines) >= BATCH, "the first batch's outcomes")

        def workers() -> list[psutil.Process]:
            servers = [p for p in ingest.family() if "forkserver" in " ".join(p.cmdline())]
            return [w for server in servers for w in server.children()]

        poll_until(lambda: len(workers()) >= 2, timeout_s=30, what="two analysis workers")
        family = ingest.family()
        os.kill(ingest.pid, signal.SIGKILL)
        ingest.proc.wait()
        wait_gone(family)
        [journals] = ingest.tmp.glob("loist-ingest-*")  # what a killed run leaves besides orphan blobs
        assert any(journals.glob("chunk-*.keys"))


@pytest.mark.postgres
async def test_a_database_outage_between_batches_fails_those_files_and_the_run_goes_on(
    fresh_pg_url: str, embedded: Path, music: list[Path]
) -> None:
    """What is forced, for real: after the first batch the test closes the ingest's PostgreSQL
    database to new connections and terminates its sessions, so the second batch's commit fails;
    after that batch's outcomes it opens the database again and the rest goes in."""
    await upgrade(fresh_pg_url)
    name = fresh_pg_url.rsplit("/", 1)[1]
    env = {**os.environ, "LOIST_DATA_DIR": str(embedded), "DATABASE_URL": fresh_pg_url}

    def connections(allow: bool) -> None:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(name), sql.SQL("true" if allow else "false")))
            if not allow:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])

    try:
        with ingest_process([str(music[0].parent)], env) as ingest:
            ingest.read_until(lambda lines: completed(lines) >= BATCH, "the first batch's outcomes")
            connections(allow=False)
            ingest.release()
            ingest.read_until(lambda lines: "FAILED" in by_status(lines), "the second batch's failures")
            connections(allow=True)
            ingest.open_gate()
            code, lines, err = ingest.finish()
    finally:
        connections(allow=True)

    assert code == 1, err  # "some inputs failed", not an unhandled DATABASE_FAILED
    statuses = by_status(lines)
    assert set(statuses) == {"COMPLETED", "FAILED"} and len(lines) == FILES
    assert {line["error"]["code"] for line in statuses["FAILED"]} == {"DATABASE_FAILED"}
    assert len(statuses["FAILED"]) == BATCH and completed(lines) == FILES - BATCH  # the second batch failed, the rest went in
    library = await Library.open(Settings(data_dir=embedded, database_url=fresh_pg_url, _env_file=None))
    try:
        assert await library.catalog.count(TrackStatus.COMPLETED) == completed(lines)
        assert stored_keys(library) == await referenced_keys(library)
    finally:
        await library.close()


def test_text_mode_counts_the_interrupted_files_instead_of_listing_them(capsys: pytest.CaptureFixture[str]) -> None:
    from loist.cli.render import IngestView
    from loist.errors import Interrupted, NotFound
    from loist.library.pipeline import IngestOutcome

    view = IngestView(as_json=False)
    with view:
        view.add(IngestOutcome("gone.mp3", error=NotFound("no such file: gone.mp3")))
        for i in range(3):
            view.add(IngestOutcome(f"{i}.mp3", error=Interrupted("not ingested")))
    view.summary(signal.SIGINT)
    err = capsys.readouterr().err
    assert "FAILED gone.mp3" in err and "0.mp3" not in err
    assert "1 failed" in err and "interrupted by SIGINT: 3 not ingested" in err
    assert view.failed == 1


def test_a_second_signal_ends_the_process_at_once() -> None:
    """The first SIGTERM asks for a clean stop; a second one, while the stop is under way, ends the
    process by the signal itself (a real process signalling itself, so both arrive in order)."""
    script = (
        "import asyncio, os, signal\n"
        "from loist.cli.interrupt import Interruption\n"
        "async def main():\n"
        "    interruption = Interruption()\n"
        "    with interruption.handled():\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        await interruption.stop.wait()\n"
        "        print('stopping', flush=True)\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "        await asyncio.Event().wait()  # a stop that never ends: only the second signal ends this\n"
        "asyncio.run(main())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)  # noqa: S603
    assert out.returncode == -signal.SIGTERM, out.stderr
    assert out.stdout == "stopping\n" and "SIGTERM: stopping" in out.stderr
