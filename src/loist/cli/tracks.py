"""Commands on tracks: ``ingest``, ``show``, ``list``, ``search`` (``update`` and ``delete``: :mod:`loist.cli.edit`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from pydantic import ValidationError

from loist.cli import render
from loist.cli.interrupt import Interruption
from loist.cli.render import JsonOpt
from loist.cli.runner import finish, guarded, on_library
from loist.errors import InvalidArgument
from loist.library.datadir import location
from loist.model import SearchRequest, Track, TrackPage, TrackStatus

if TYPE_CHECKING:
    from loist.library.service import Library

TrackId = Annotated[str, typer.Argument(help="Track id (UUID).")]


def ingest(
    sources: Annotated[list[str], typer.Argument(help="URLs, files and folders (recursive), mixed.")],
    as_json: JsonOpt = False,
    concurrency: Annotated[int | None, typer.Option(help="Parallel workers (default: one per core).")] = None,
) -> None:
    """Ingest audio from URLs, files and folders. Prints one line (or JSON object) per input.

    SIGINT (Ctrl-C) or SIGTERM stops it cleanly: what was committed stays and is reported, the rest
    is reported INTERRUPTED and leaves no blob behind; the exit code is 130 (SIGINT) or 143 (SIGTERM).
    A second signal aborts at once.
    """
    view = render.IngestView(as_json)
    interruption = Interruption()

    async def go(library: Library) -> None:
        from loist.cli.testhooks import bulk_control  # deferred: it imports the pipeline

        with view, interruption.handled():
            control = bulk_control(interruption.stop)
            outcomes = library.ingest_many(sources, concurrency=concurrency, on_planned=view.planned, control=control)
            async for outcome in outcomes:
                view.add(outcome)

    on_library(as_json, go, before_open=_start_workers if any("://" not in s for s in sources) else None)
    view.summary(interruption.signum)
    if interruption.exit_code is not None:
        raise typer.Exit(interruption.exit_code)
    finish(view.failed)


def _start_workers() -> None:
    """Files to analyse: their workers start while the catalog opens."""
    from loist.library.pipeline import start_workers_early

    start_workers_early()


def show(track_id: TrackId, as_json: JsonOpt = False) -> None:
    """Show one track's metadata and its embed URL (every value whole, never cut to the terminal)."""

    async def go(library: Library) -> tuple[Track, str]:
        track = await library.get(track_id)
        return track, library.embed_url(track.id)

    track, embed_url = on_library(as_json, go)
    render.track(track, embed_url, as_json)


def list_tracks(
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Page size.")] = 50,
    cursor: Annotated[str | None, typer.Option(help="Opaque cursor from a previous page.")] = None,
    status: Annotated[str | None, typer.Option(help="COMPLETED (default), FAILED, or 'all'.")] = None,
) -> None:
    """List tracks, newest first: id, artist, title, album, year, duration, format."""
    chosen = guarded(as_json, lambda: _status(status))

    async def go(library: Library) -> tuple[TrackPage, str]:
        page = await library.list(cursor=cursor, limit=limit, status=chosen)
        return page, location(library.settings)

    page, where = on_library(as_json, go)
    render.track_page(page, as_json, where=where, status=chosen)


def _status(value: str | None) -> TrackStatus | None:
    """``--status``: COMPLETED when not given, None (every status) for ``all``."""
    if value is None:
        return TrackStatus.COMPLETED
    if value.lower() == "all":
        return None
    try:
        return TrackStatus(value.upper())
    except ValueError:
        raise InvalidArgument(f"unknown status {value!r}") from None


SEARCH_CONTEXT = {"ignore_unknown_options": True, "allow_interspersed_args": True}


def search(
    words: Annotated[list[str] | None, typer.Argument(
        metavar="QUERY...", show_default=False,
        help="Search text (docs/search.md), in one or several arguments. A word starting with one dash "
        "(-live, -format:mp3) is part of the query; after -- everything is.")] = None,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    sort: Annotated[str, typer.Option(help="relevance, title, artist, album, year, duration, added.")] = "relevance",
    order: Annotated[str | None, typer.Option(help="asc or desc.")] = None,
    cursor: Annotated[str | None, typer.Option(help="Opaque cursor from a previous page.")] = None,
    facets: Annotated[bool, typer.Option(help="Also count by genre, format and decade.")] = False,
) -> None:
    """Search the library (ranked full text, field:value filters, ranges).

    Any text is a query: `loist search hell -live` and `loist search -format:mp3` search for what
    they say. Only this command's own long options (--json, --limit, ...) are options.
    """
    options = {"query": " ".join(words or []), "limit": limit, "sort": sort, "order": order, "cursor": cursor, "facets": facets}
    request = guarded(as_json, lambda: _search_request(options))
    result = on_library(as_json, lambda library: library.search(request))
    render.search_result(result, as_json)


def _search_request(options: dict[str, object]) -> SearchRequest:
    try:
        return SearchRequest.model_validate(options)
    except ValidationError as exc:  # name the option and what is wrong with it
        problems = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors(include_url=False))
        raise InvalidArgument(f"invalid search: {problems}") from None
