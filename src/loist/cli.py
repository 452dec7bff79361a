"""The ``loist`` command line.

Every command calls the library service (never SQL or blob I/O here), has ``--help``, and a
``--json`` mode for scripts. Errors map once to exit codes (``loist.errors.EXIT_CODE``): 0 means
everything succeeded.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from loist.config import Settings, load_settings
from loist.errors import LoistError
from loist.model import SearchRequest, Track, TrackStatus

T = TypeVar("T")

app = typer.Typer(
    name="loist",
    help="Loist: a music library server for AI assistants (Music Library MCP).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
config_app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

out = Console(soft_wrap=True)
err = Console(stderr=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of text.")]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _fail(exc: LoistError, as_json: bool) -> typer.Exit:
    if as_json:
        _print_json({"error": exc.to_dict()})
    else:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False, markup=True)
    return typer.Exit(exc.exit_code)


def _settings(as_json: bool = False, **overrides: Any) -> Settings:
    """Load and validate the settings, and configure logging from them (LOG_LEVEL, LOG_FORMAT)."""
    from loist.logs import configure_logging

    try:
        settings = load_settings(**overrides)
    except LoistError as exc:
        raise _fail(exc, as_json) from None
    configure_logging(settings)
    return settings


def _run(fn: Callable[[], Awaitable[T]], as_json: bool) -> T:
    try:
        return asyncio.run(fn())
    except LoistError as exc:
        raise _fail(exc, as_json) from None


@asynccontextmanager
async def _library(settings: Settings):  # type: ignore[no-untyped-def]
    from loist.library.service import Library

    lib = await Library.open(settings)
    try:
        yield lib
    finally:
        await lib.close()


def _track_summary(track: Track) -> str:
    t = track.tags
    who = t.artist or "unknown artist"
    title = t.title or track.source.original_filename or str(track.id)
    dur = f"{track.audio.duration_s:.1f}s" if track.audio.duration_s is not None else "?"
    return f"{track.id}  {who} - {title}  [{track.audio.format or '?'}, {dur}]"


# --- serve -------------------------------------------------------------------------------------
@app.command()
def serve(
    transport: Annotated[str | None, typer.Option(help="stdio or http (default: SERVER_TRANSPORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address for http (default: SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port for http (default: PORT).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Announce the endpoints as one JSON line and log JSON lines (stderr).")
    ] = False,
) -> None:
    """Serve the library: MCP (stdio or streamable HTTP at /mcp) plus the web routes."""
    overrides: dict[str, Any] = {}
    if transport is not None:
        overrides["server_transport"] = transport
    if host is not None:
        overrides["server_host"] = host
    if port is not None:
        overrides["port"] = port
    if as_json:
        overrides["log_format"] = "json"
    settings = _settings(as_json, **overrides)
    from loist.serve import serve as run_server

    try:
        run_server(
            settings, transport=settings.server_transport, host=settings.server_host, port=settings.port,
            as_json=as_json,
        )
    except LoistError as exc:
        raise _fail(exc, as_json) from None


# --- ingest ------------------------------------------------------------------------------------
@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="URLs, files and folders (recursive), mixed.")],
    as_json: JsonOpt = False,
    concurrency: Annotated[int | None, typer.Option(help="Parallel workers (default: one per core).")] = None,
) -> None:
    """Ingest audio from URLs, files and folders. Prints one line (or JSON object) per input."""
    settings = _settings(as_json)
    show_bar = not as_json and err.is_terminal

    async def go() -> dict[str, int]:
        counts = {"created": 0, "existing": 0, "failed": 0, "skipped": 0}
        started = time.perf_counter()
        async with _library(settings) as lib:
            progress = None
            task_id = None
            if show_bar:
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )

                progress = Progress(
                    TextColumn("ingesting"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]:.1f} files/s  failed {task.fields[failed]}"),
                    TimeElapsedColumn(), console=err, transient=True,
                )
                progress.start()
                task_id = progress.add_task("ingest", total=None, rate=0.0, failed=0)
            try:
                done = 0
                def planned(total: int) -> None:
                    if progress is not None and task_id is not None:
                        progress.update(task_id, total=total)

                async for outcome in lib.ingest_many(sources, concurrency=concurrency, on_planned=planned):
                    done += 1
                    if outcome.skipped:
                        counts["skipped"] += 1
                    elif outcome.error is not None:
                        counts["failed"] += 1
                    elif outcome.created:
                        counts["created"] += 1
                    else:
                        counts["existing"] += 1
                    if as_json:
                        _print_json(outcome.to_dict())
                    elif outcome.error is not None:
                        err.print(f"[red]FAILED[/red] {outcome.input}: {outcome.error.code}: {outcome.error.message}", highlight=False)
                    elif not outcome.skipped and outcome.track is not None and not show_bar:
                        verb = "added" if outcome.created else "exists"
                        out.print(f"{verb}  {_track_summary(outcome.track)}", highlight=False)
                    if progress is not None and task_id is not None:
                        elapsed = max(time.perf_counter() - started, 1e-6)
                        progress.update(task_id, completed=done, rate=done / elapsed, failed=counts["failed"])
            finally:
                if progress is not None:
                    progress.stop()
        counts["seconds"] = round(time.perf_counter() - started, 3)  # type: ignore[assignment]
        return counts

    counts = _run(go, as_json)
    if not as_json:
        total = counts["created"] + counts["existing"] + counts["failed"]
        rate = total / counts["seconds"] if counts["seconds"] else 0.0
        err.print(
            f"{total} processed: {counts['created']} added, {counts['existing']} already in the library, "
            f"{counts['failed']} failed, {counts['skipped']} skipped (not audio) in {counts['seconds']:.2f}s "
            f"({rate:.0f} files/s)",
            highlight=False,
        )
    raise typer.Exit(1 if counts["failed"] else 0)


# --- read / write ------------------------------------------------------------------------------
@app.command()
def show(track_id: Annotated[str, typer.Argument(help="Track id (UUID).")], as_json: JsonOpt = False) -> None:
    """Show one track's metadata."""
    settings = _settings(as_json)

    async def go() -> tuple[Track, str]:
        async with _library(settings) as lib:
            track = await lib.get(track_id)
            return track, lib.embed_url(track.id)

    track, embed = _run(go, as_json)
    if as_json:
        _print_json(track.model_dump(mode="json") | {"embed_url": embed})
        return
    data = track.model_dump(mode="json")
    table = Table(show_header=False, box=None)
    for section in ("tags", "audio", "artwork", "source"):
        for key, value in data.pop(section).items():
            if value not in (None, [], ""):
                table.add_row(f"{section}.{key}", str(value))
    for key, value in data.items():
        if value is not None:
            table.add_row(key, str(value))
    table.add_row("embed_url", embed)
    out.print(table)


@app.command("list")
def list_tracks(
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Opaque cursor from a previous page.")] = None,
    status: Annotated[str | None, typer.Option(help="COMPLETED (default), FAILED, or 'all'.")] = None,
) -> None:
    """List tracks, newest first."""
    settings = _settings(as_json)
    chosen: TrackStatus | None = TrackStatus.COMPLETED
    if status is not None:
        if status.lower() == "all":
            chosen = None
        else:
            try:
                chosen = TrackStatus(status.upper())
            except ValueError:
                from loist.errors import InvalidArgument

                raise _fail(InvalidArgument(f"unknown status {status!r}"), as_json) from None

    async def go():  # type: ignore[no-untyped-def]
        async with _library(settings) as lib:
            return await lib.list(cursor=cursor, limit=limit, status=chosen)

    page = _run(go, as_json)
    if as_json:
        _print_json(page.model_dump(mode="json"))
        return
    for track in page.items:
        line = _track_summary(track)
        if track.status == TrackStatus.FAILED:
            line = f"{track.id}  FAILED {track.error_code} ({track.attempts}x) {track.source.location}"
        out.print(line, highlight=False)
    if page.next_cursor:
        err.print(f"more: loist list --cursor {page.next_cursor}", highlight=False)


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="Search text (see docs/search.md).")] = "",
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    sort: Annotated[str, typer.Option(help="relevance, title, artist, album, year, duration, added.")] = "relevance",
    order: Annotated[str | None, typer.Option(help="asc or desc.")] = None,
    cursor: Annotated[str | None, typer.Option(help="Opaque cursor from a previous page.")] = None,
    facets: Annotated[bool, typer.Option(help="Also count by genre, format and decade.")] = False,
) -> None:
    """Search the library (ranked full text, field:value filters, ranges)."""
    settings = _settings(as_json)
    try:
        request = SearchRequest(query=query, limit=limit, sort=sort, order=order, cursor=cursor, facets=facets)  # type: ignore[arg-type]
    except ValueError as exc:
        from loist.errors import InvalidArgument

        raise _fail(InvalidArgument(str(exc).splitlines()[0] + ": " + str(exc).splitlines()[-1]), as_json) from None

    async def go():  # type: ignore[no-untyped-def]
        async with _library(settings) as lib:
            return await lib.search(request)

    result = _run(go, as_json)
    if as_json:
        _print_json(result.model_dump(mode="json"))
        return
    for hit in result.items:
        out.print(f"{hit.score:6.0f}  {_track_summary(hit.track)}", highlight=False)
    total = f"{result.total:,}" + ("+" if result.total_relation == "gte" else "")  # "1,000+": counting stopped
    err.print(f"{total} match(es)" + (f"; more: --cursor {result.next_cursor}" if result.next_cursor else ""), highlight=False)
    if result.facets:
        for name, counts in result.facets.items():
            err.print(f"{name}: " + ", ".join(f"{k} ({v})" for k, v in counts.items()), highlight=False)


@app.command()
def delete(track_id: Annotated[str, typer.Argument(help="Track id (UUID).")], as_json: JsonOpt = False) -> None:
    """Delete a track: its row, its audio blob and its thumbnail."""
    settings = _settings(as_json)

    async def go() -> Track:
        async with _library(settings) as lib:
            return await lib.delete(track_id)

    track = _run(go, as_json)
    if as_json:
        _print_json({"deleted": str(track.id)})
    else:
        out.print(f"deleted {track.id}", highlight=False)


@app.command()
def seed(
    synthetic: Annotated[int, typer.Option("--synthetic", min=0, help="Add N metadata-only tracks sharing one blob.")] = 0,
    audio: Annotated[int, typer.Option("--audio", "--real", min=0, max=500,
                                       help="Add N real tracks made with ffmpeg (several formats, tags, artwork).")] = 0,
    seed_value: Annotated[int, typer.Option("--seed", help="Random seed (deterministic output).")] = 0,
    wipe: Annotated[bool, typer.Option("--wipe", help="Delete every track and its blobs first (never in production).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Fill the library with test data: real audio for functional checks, synthetic tracks for scale.

    Idempotent: the same --seed makes the same files and tracks, so seeding twice adds nothing.
    """
    settings = _settings(as_json)
    if not (synthetic or audio or wipe):
        from loist.errors import InvalidArgument

        raise _fail(InvalidArgument("nothing to do: give --audio N and/or --synthetic N (or --wipe)"), as_json)

    async def go() -> dict[str, Any]:
        from loist.library.seeding import seed_audio

        started = time.perf_counter()
        result: dict[str, Any] = {}
        async with _library(settings) as lib:
            if wipe:
                result["wiped"] = await lib.wipe()
            if audio:
                result["audio"] = (await seed_audio(lib, audio, seed=seed_value)).to_dict()
            result["added"] = await lib.seed_synthetic(synthetic, seed=seed_value) if synthetic else 0
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    result = _run(go, as_json)
    failed = result.get("audio", {}).get("failed", [])
    if as_json:
        _print_json(result)
    else:
        if "wiped" in result:
            out.print(f"wiped {result['wiped']} tracks", highlight=False)
        if "audio" in result:
            a = result["audio"]
            formats = ", ".join(f"{k} {v}" for k, v in a["formats"].items())
            out.print(f"real audio: {a['created']} added, {a['existing']} already there ({formats})", highlight=False)
            for f in failed:
                err.print(f"[red]FAILED[/red] {f['input']}: {f['code']}: {f['message']}", highlight=False)
        if synthetic:
            out.print(f"added {result['added']} synthetic tracks", highlight=False)
        out.print(f"done in {result['seconds']:.1f}s", highlight=False)
    raise typer.Exit(1 if failed else 0)


# --- db ----------------------------------------------------------------------------------------
def _migrate(as_json: bool, action: str, revision: str = "head") -> tuple[str | None, list[str]]:
    """Run one ``loist db`` action and return (current revision, head revisions)."""
    from loist.library.service import migrate_database

    settings = _settings(as_json)
    return _run(lambda: migrate_database(settings, action, revision), as_json)  # type: ignore[arg-type]


def _print_revision(now: str | None, as_json: bool) -> None:
    if as_json:
        _print_json({"current": now})
    else:
        out.print(f"database at revision {now or 'base (empty)'}", highlight=False)


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head", as_json: JsonOpt = False) -> None:
    """Migrate the database up to REVISION (default: head). Safe to run from several instances."""
    now, _ = _migrate(as_json, "upgrade", revision)
    _print_revision(now, as_json)


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision, e.g. -1 or base.")], as_json: JsonOpt = False) -> None:
    """Migrate the database down to REVISION."""
    now, _ = _migrate(as_json, "downgrade", revision)
    _print_revision(now, as_json)


@db_app.command("current")
def db_current(as_json: JsonOpt = False) -> None:
    """Print the database's current revision and the code's head revision."""
    now, head = _migrate(as_json, "current")
    if as_json:
        _print_json({"current": now, "head": head[0] if head else None, "up_to_date": bool(head) and now == head[0]})
    else:
        out.print(f"current: {now or 'base (empty)'}  head: {', '.join(head)}", highlight=False)


# --- config ------------------------------------------------------------------------------------
@config_app.command("check")
def config_check(as_json: JsonOpt = False) -> None:
    """Validate the configuration and print the effective values (secrets masked)."""
    try:
        settings = Settings()
    except Exception as exc:  # pydantic validation error: report it like any invalid config
        from loist.errors import ConfigInvalid

        raise _fail(ConfigInvalid(f"invalid configuration: {exc}"), as_json) from None
    problems = settings.problems()
    if as_json:
        _print_json({"ok": not problems, "problems": problems, "settings": settings.masked()})
    else:
        table = Table(show_header=False, box=None)
        for key, value in settings.masked().items():
            table.add_row(key, "" if value is None else str(value))
        out.print(table)
        if problems:
            for p in problems:
                err.print(f"[red]problem[/red] {p}", highlight=False)
        else:
            err.print(f"configuration OK for the {settings.environment} profile", highlight=False)
    if problems:
        raise typer.Exit(4)


# --- environments: deployment check, export / import -------------------------------------------
@app.command()
def smoke(
    base_url: Annotated[str, typer.Option("--base-url", help="The deployment to check, e.g. https://loist.example.com.")],
    token: Annotated[str | None, typer.Option(
        "--token", envvar="SMOKE_BEARER_TOKEN", show_envvar=True,
        help="Bearer token for /mcp (also proves /mcp refuses calls without it). Never printed.")] = None,
    audio_url: Annotated[str | None, typer.Option(
        "--audio-url", envvar="SMOKE_AUDIO_URL", show_envvar=True,
        help="Audio the deployment can download. Default, for a loopback URL only: a WAV served from here.")] = None,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request (ingest gets longer).")] = 30.0,
    as_json: JsonOpt = False,
) -> None:
    """Check a running deployment end to end: health, MCP auth and tools, ingest, metadata, search,
    embed tags, oEmbed, a Range request on the stream, delete. Exit 0 only when every check passes."""
    from loist.ops.smoke import run_smoke

    report = _run(lambda: run_smoke(base_url, token=token, audio_url=audio_url, timeout_s=timeout), as_json)
    if as_json:
        _print_json(report.to_dict())
    else:
        for line in report.lines():
            out.print(line, highlight=False, markup=False)
    raise typer.Exit(0 if report.ok else 1)


@app.command("export")
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
    settings = _settings(as_json)

    async def go():  # type: ignore[no-untyped-def]
        from loist.library.transfer import export_to_file

        async with _library(settings) as lib:
            return await export_to_file(lib, path, anonymize=anonymize, salt=salt)

    report = _run(go, as_json)
    if as_json:
        _print_json(report.to_dict())
    else:
        kind = "anonymised " if report.anonymized else ""
        out.print(f"exported {report.tracks} {kind}tracks to {report.path}", highlight=False)


@app.command("import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="A file written by loist export.")],
    blobs: Annotated[str | None, typer.Option(
        "--blobs", help="copy (from --source-bucket/--source-dir, silence where that fails) or silence "
        "(regenerate same length and format). Default: copy when a source is given, else silence.")] = None,
    source_bucket: Annotated[str | None, typer.Option("--source-bucket", help="GCS bucket to copy blobs from.")] = None,
    source_dir: Annotated[Path | None, typer.Option("--source-dir", help="Local blob folder to copy blobs from.")] = None,
    wipe: Annotated[bool, typer.Option("--wipe", help="Delete every track and its blobs first (never in production).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Load an export into this library (staging). Idempotent: importing twice adds nothing."""
    from loist.errors import InvalidArgument

    settings = _settings(as_json)
    if blobs not in (None, "copy", "silence"):
        raise _fail(InvalidArgument(f"--blobs must be copy or silence, got {blobs!r}"), as_json)

    async def go() -> dict[str, Any]:
        from loist.library.transfer import import_file

        started = time.perf_counter()
        result: dict[str, Any] = {}
        async with _library(settings) as lib:
            if wipe:
                result["wiped"] = await lib.wipe()
            report = await import_file(lib, path, blobs=blobs, source_bucket=source_bucket,  # type: ignore[arg-type]
                                       source_dir=source_dir)
        result.update(report.to_dict())
        result["seconds"] = round(time.perf_counter() - started, 3)
        return result

    result = _run(go, as_json)
    if as_json:
        _print_json(result)
    else:
        if "wiped" in result:
            out.print(f"wiped {result['wiped']} tracks", highlight=False)
        out.print(
            f"read {result['read']}: {result['created']} added, {result['existing']} already there; blobs "
            f"{result['copied']} copied, {result['regenerated']} regenerated ({result['fell_back']} after a failed copy)"
            f" in {result['seconds']:.1f}s",
            highlight=False,
        )
        for f in result["failed"]:
            err.print(f"[red]FAILED[/red] {f['id']}: {f['code']}: {f['message']}", highlight=False)
    raise typer.Exit(1 if result["failed"] else 0)


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
