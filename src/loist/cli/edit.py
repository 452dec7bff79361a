"""Commands that change a track: ``update`` (its tags) and ``delete`` (the track, asked first).

``update`` goes through the same service call as the MCP tool ``update_metadata``
(:meth:`Library.update_tags`, validated by :class:`~loist.model.TagsPatch`), so both accept and
refuse the same values. ``delete`` asks on a terminal; ``--yes`` skips the question, and without a
terminal to ask on it refuses unless ``--yes`` is given (a script must say it means it).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loist.cli import render
from loist.cli.render import JsonOpt
from loist.cli.runner import SOME_FAILED, guarded, on_library
from loist.cli.tracks import TrackId
from loist.errors import InvalidArgument
from loist.model import TAG_FIELDS, Track

if TYPE_CHECKING:
    from loist.library.service import Library

Text = Annotated[str | None, typer.Option(show_default=False)]


def update(
    track_id: TrackId,
    title: Text = None,
    artist: Annotated[list[str] | None, typer.Option(
        "--artist", show_default=False, help="An artist; repeat for several (--artist A --artist B).")] = None,
    album: Text = None,
    album_artist: Text = None,
    genre: Annotated[list[str] | None, typer.Option(
        "--genre", show_default=False, help="A genre; repeat for several. Replaces the track's genres.")] = None,
    year: Annotated[int | None, typer.Option(show_default=False)] = None,
    track_number: Annotated[int | None, typer.Option("--track", show_default=False, help="Track number.")] = None,
    disc_number: Annotated[int | None, typer.Option("--disc", show_default=False, help="Disc number.")] = None,
    composer: Text = None,
    label: Text = None,
    isrc: Text = None,
    comment: Text = None,
    clear: Annotated[list[str] | None, typer.Option(
        "--clear", metavar="FIELD", show_default=False, help="Empty a tag (title, album, year, genres, ...); repeatable.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a track's tags; the others keep their values. Prints the track as `loist show` does.

    The same rules as the MCP tool update_metadata (lengths, year 1000-9999, ...).
    """
    given = {"title": title, "album": album, "album_artist": album_artist, "year": year, "track_number": track_number,
             "disc_number": disc_number, "composer": composer, "label": label, "isrc": isrc, "comment": comment}
    changes: dict[str, Any] = {name: value for name, value in given.items() if value is not None}
    changes = guarded(as_json, lambda: _changes(changes, artist, genre, clear or []))

    async def go(library: Library) -> tuple[Track, str]:
        track = await library.update_tags(track_id, changes)
        return track, library.embed_url(track.id)

    track, embed_url = on_library(as_json, go)
    render.track(track, embed_url, as_json)


def _changes(changes: dict[str, Any], artists: list[str] | None, genres: list[str] | None, clear: list[str]) -> dict[str, Any]:
    """The patch for :meth:`Library.update_tags` from the options given; refuses an empty one."""
    if artists is not None:
        changes |= _artist_patch(artists)
    if genres is not None:
        changes["genres"] = genres
    for name in clear:
        field = _artist_field() if name in ("artist", "artists") else name.replace("-", "_")
        if field not in TAG_FIELDS:
            raise InvalidArgument(f"--clear {name}: not a tag; tags are {', '.join(TAG_FIELDS)}")
        if field in changes:
            raise InvalidArgument(f"--clear {name} and a new value for it: give one of them")
        changes[field] = None
    if not changes:
        raise InvalidArgument("nothing to change: give at least one tag option, e.g. --title 'New title' (see --help)")
    return changes


def _artist_field() -> str:
    return "artists" if "artists" in TAG_FIELDS else "artist"


def _artist_patch(artists: list[str]) -> dict[str, Any]:
    """``--artist`` given once or more: a list where tracks keep several artists, else the one."""
    if _artist_field() == "artists":
        return {"artists": artists}
    if len(artists) > 1:
        raise InvalidArgument("this library keeps one artist per track: give --artist once")
    return {"artist": artists[0]}


def delete(
    track_id: TrackId,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask; required when not on a terminal.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete a track: its row, its audio blob and its thumbnail. Asks first on a terminal."""
    if not yes:
        guarded(as_json, _can_ask)

    async def go(library: Library) -> Track | None:
        if not yes:
            track = await library.get(track_id)
            if not typer.confirm(f"delete {render.track_summary(track)}?", default=False, err=True):
                return None
        return await library.delete(track_id)

    track = on_library(as_json, go)
    if track is None:
        render.note("nothing deleted")
        raise typer.Exit(SOME_FAILED)
    render.deleted(track, as_json)


def _can_ask() -> None:
    if not sys.stdin.isatty():
        raise InvalidArgument("loist delete asks before deleting and there is no terminal to ask on: add --yes to delete")
