"""Commands that look after a library rather than its tracks: ``db``, ``config``, ``seed``,
``fsck`` (catalog and blob store agree), ``export`` and ``import`` (moving data between environments)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn

import typer

from loist.cli import render
from loist.cli.render import JsonOpt
from loist.cli.runner import finish, guarded, on_library, run, settings
from loist.config import build_settings
from loist.errors import EXIT_CODE, ErrorCode, InvalidArgument

if TYPE_CHECKING:
    from loist.library.service import Library
    from loist.library.transfer import BlobMode

db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
config_app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)

Wipe = Annotated[bool, typer.Option("--wipe", help="Delete every track and its blobs first (never in production).")]


# --- db ----------------------------------------------------------------------------------------
def _migrate(
    as_json: bool, action: Literal["upgrade", "downgrade", "current"], revision: str = "head"
) -> tuple[str | None, list[str]]:
    """Run one ``loist db`` action and return (current revision, head revisions)."""
    from loist.library.service import migrate_database

    loaded = settings(as_json)
    return run(as_json, lambda: migrate_database(loaded, action, revision))


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head", as_json: JsonOpt = False) -> None:
    """Migrate the database up to REVISION (default: head). Safe to run from several instances."""
    now, _ = _migrate(as_json, "upgrade", revision)
    render.revision(now, as_json)


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")], as_json: JsonOpt = False) -> None:
    """Migrate the database down to REVISION."""
    now, _ = _migrate(as_json, "downgrade", revision)
    render.revision(now, as_json)


@db_app.command("current")
def db_current(as_json: JsonOpt = False) -> None:
    """Print the database's current revision and the code's head revision."""
    now, head = _migrate(as_json, "current")
    render.revisions(now, head, as_json)


# --- config ------------------------------------------------------------------------------------
@config_app.command("check")
def config_check(as_json: JsonOpt = False) -> None:
    """Validate the configuration and print the effective values (secrets masked), the library's
    folder included; a folder that cannot be used is a problem like any other."""
    from loist.library.datadir import folder_problems

    built = guarded(as_json, build_settings)  # the profile's problems are reported, not raised
    problems = built.problems()
    problems += guarded(as_json, lambda: folder_problems(built)) if not problems else []
    render.config_report(built, problems, as_json)
    if problems:
        raise typer.Exit(EXIT_CODE[ErrorCode.CONFIG_INVALID])


# --- test data ---------------------------------------------------------------------------------
def seed(
    synthetic: Annotated[int, typer.Option("--synthetic", min=0, help="Add N metadata-only tracks sharing one blob.")] = 0,
    audio: Annotated[int, typer.Option("--audio", "--real", min=0, max=500,
                                       help="Add N real tracks made with ffmpeg (several formats, tags, artwork).")] = 0,
    seed_value: Annotated[int, typer.Option("--seed", help="Random seed (deterministic output).")] = 0,
    wipe: Wipe = False,
    as_json: JsonOpt = False,
) -> None:
    """Fill the library with test data: real audio for functional checks, synthetic tracks for scale.

    Idempotent: the same --seed makes the same files and tracks, so seeding twice adds nothing.
    """
    if not (synthetic or audio or wipe):
        guarded(as_json, _nothing_to_seed)

    async def go(library: Library) -> dict[str, Any]:
        from loist.library.seeding import seed_audio

        result: dict[str, Any] = {}
        if wipe:
            result["wiped"] = await _wipe(library)
        if audio:
            result["audio"] = (await seed_audio(library, audio, seed=seed_value)).to_dict()
        result["added"] = await library.seed_synthetic(synthetic, seed=seed_value) if synthetic else 0
        return result

    started = time.perf_counter()
    result = on_library(as_json, go)
    result["seconds"] = round(time.perf_counter() - started, 3)
    render.seeded(result, synthetic, as_json)
    finish(len(result.get("audio", {}).get("failed", [])))


def _nothing_to_seed() -> NoReturn:
    raise InvalidArgument("nothing to do: give --audio N and/or --synthetic N (or --wipe)")


async def _wipe(library: Library) -> int:
    return await library.wipe()


# --- consistency -------------------------------------------------------------------------------
def fsck(
    repair: Annotated[bool, typer.Option(
        "--repair", help="Remove orphan blobs and leftovers; mark tracks whose audio is gone FAILED; "
        "queue again jobs whose waveform or rendition is gone.")] = False,
    grace: Annotated[float, typer.Option(
        "--grace", min=0, help="Minutes: unreferenced blobs and temp files younger than this are left alone "
        "(an ingest may be writing them). 0 when nothing is ingesting.")] = 60,
    as_json: JsonOpt = False,
) -> None:
    """Check that the catalog and the blob store agree: rows whose blobs are missing, finished jobs
    whose derived blobs are missing, orphan blobs, leftover temp files. Exit 0 when consistent (or all repaired), 1 when problems remain."""
    from loist.library.fsck import fsck

    report = on_library(as_json, lambda library: fsck(library, repair=repair, grace=timedelta(minutes=grace)))
    render.fsck_report(report.to_dict(), as_json)
    finish(report.remaining)


# --- moving data between environments ----------------------------------------------------------
def export_cmd(
    path: Annotated[Path, typer.Argument(help="Output file (JSON Lines: a header line, then one line per track).")],
    anonymize: Annotated[bool, typer.Option(
        "--anonymize", help="Replace source URLs and their tokens, filenames and comments with keyed hashes.")] = False,
    salt: Annotated[str | None, typer.Option(
        "--salt", envvar="EXPORT_SALT", show_envvar=True,
        help="HMAC key for --anonymize (same key, same replacements). Default: random per export.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export the library's COMPLETED tracks (metadata, not audio) to a file, e.g. production -> staging."""
    from loist.library.transfer import export_to_file

    report = on_library(as_json, lambda library: export_to_file(library, path, anonymize=anonymize, salt=salt))
    render.exported(report, as_json)


def import_cmd(
    path: Annotated[Path, typer.Argument(help="A file written by loist export.")],
    blobs: Annotated[str | None, typer.Option(
        "--blobs", help="copy (from --source-bucket/--source-dir, silence where that fails) or silence "
        "(regenerate same length and format). Default: copy when a source is given, else silence.")] = None,
    source_bucket: Annotated[str | None, typer.Option("--source-bucket", help="GCS bucket to copy blobs from.")] = None,
    source_dir: Annotated[Path | None, typer.Option("--source-dir", help="Local blob folder to copy blobs from.")] = None,
    wipe: Wipe = False,
    as_json: JsonOpt = False,
) -> None:
    """Load an export into this library (staging). Idempotent: importing twice adds nothing."""
    mode = guarded(as_json, lambda: _blob_mode(blobs))

    async def go(library: Library) -> dict[str, Any]:
        from loist.library.transfer import import_file

        result: dict[str, Any] = {"wiped": await _wipe(library)} if wipe else {}
        report = await import_file(library, path, blobs=mode, source_bucket=source_bucket, source_dir=source_dir)
        return result | report.to_dict()

    started = time.perf_counter()
    result = on_library(as_json, go)
    result["seconds"] = round(time.perf_counter() - started, 3)
    render.imported(result, as_json)
    finish(len(result["failed"]))


def _blob_mode(value: str | None) -> BlobMode | None:
    if value is None:
        return None
    if value == "copy":
        return "copy"
    if value == "silence":
        return "silence"
    raise InvalidArgument(f"--blobs must be copy or silence, got {value!r}")
