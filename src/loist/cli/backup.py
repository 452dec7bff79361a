"""``loist backup DEST`` and ``loist restore SRC``: a consistent copy of the whole library (catalog and
audio) taken while the server runs, and its way back into a new, empty library (:mod:`loist.library.backup`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loist.cli import render
from loist.cli.render import JsonOpt
from loist.cli.runner import guarded, on_library, run, settings
from loist.errors import InvalidArgument

if TYPE_CHECKING:
    from loist.library.backup import BlobsMode


def _mode(value: str) -> BlobsMode:
    if value not in ("copy", "list"):
        raise InvalidArgument(f"--blobs must be copy or list, got {value!r}")
    return "copy" if value == "copy" else "list"


def backup(
    dest: Annotated[Path, typer.Argument(help="A new (or empty) folder to write the backup into.")],
    blobs: Annotated[str, typer.Option(
        "--blobs", help="copy: the audio and thumbnails too (default); list: only their listing "
        "(for a bucket with its own versioning or retention).")] = "copy",
    as_json: JsonOpt = False,
) -> None:
    """Back up the library (catalog and audio) into DEST, while it keeps serving."""
    from loist.library.backup import backup_library

    mode = guarded(as_json, lambda: _mode(blobs))
    report = on_library(as_json, lambda library: backup_library(library, dest, blobs=mode))
    _print(report.to_dict(), as_json, f"backed up {report.tracks} tracks and {report.blobs} blobs "
           f"({report.blob_bytes} bytes, {report.dialect} catalog at revision {report.revision}) into {report.path}")
    for key in report.missing:
        render.note(f"  not in the backup: {key} (its track was deleted while the backup ran)")


def restore(
    src: Annotated[Path, typer.Argument(help="A folder written by loist backup.")],
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into this (empty) library, then check every track is playable. Stop the server first."""
    from loist.library.backup import restore_library

    loaded = settings(as_json)
    report = run(as_json, lambda: restore_library(loaded, src))
    _print(report.to_dict(), as_json, f"restored {report.tracks} tracks ({report.blobs} blobs), every one "
           f"checked playable; {report.dropped} dropped (deleted while the backup was taken)")


def _print(data: dict[str, Any], as_json: bool, text: str) -> None:
    if as_json:
        render.print_json(data)
    else:
        render.say(text)
