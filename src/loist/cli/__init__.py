"""The ``loist`` command line (Typer).

Every command calls the library service (never SQL or blob I/O here), has ``--help``, and a
``--json`` mode for scripts. Errors map once to exit codes (``loist.errors.EXIT_CODE``, in
:mod:`loist.cli.runner`): 0 means everything succeeded.

One module per topic: :mod:`~loist.cli.tracks` (ingest, show, list, search), :mod:`~loist.cli.edit`
(update, delete),
:mod:`~loist.cli.admin` (db, config, seed, fsck, export, import), :mod:`~loist.cli.server` (serve,
smoke), :mod:`~loist.cli.backup` (backup, restore); :mod:`~loist.cli.render` prints results as text or JSON; :mod:`~loist.cli.runner` loads
the settings, opens the library, runs one call and maps errors; :mod:`~loist.cli.interrupt` turns
SIGINT/SIGTERM during an ingest into a clean stop (:mod:`~loist.cli.testhooks`: its test hooks). The table below is the whole
command set, in the order ``loist --help`` lists it.
"""

from __future__ import annotations

import sys

import typer

from loist.cli import admin, backup, edit, render, server, tracks
from loist.errors import EXIT_CODE, ErrorCode

app = typer.Typer(
    name="loist",
    help="Loist: a music library server for AI assistants (Music Library MCP).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(admin.db_app, name="db")
app.add_typer(admin.config_app, name="config")
app.command()(server.serve)
app.command()(tracks.ingest)
app.command()(tracks.show)
app.command("list")(tracks.list_tracks)
app.command(context_settings=tracks.SEARCH_CONTEXT)(tracks.search)
app.command()(edit.update)
app.command()(edit.delete)
app.command()(admin.seed)
app.command()(admin.fsck)
app.command()(server.smoke)
app.command("export")(admin.export_cmd)
app.command("import")(admin.import_cmd)
app.command()(backup.backup)
app.command()(backup.restore)


def main() -> None:
    """The console script: the command table, and the last guard against a traceback reaching a user."""
    try:
        app()
    except Exception as exc:  # every command maps its errors (runner.guarded); this is only the net under it
        from loist.cli.runner import unexpected

        render.error(unexpected(exc), as_json="--json" in sys.argv)
        raise SystemExit(EXIT_CODE[ErrorCode.INTERNAL]) from None
