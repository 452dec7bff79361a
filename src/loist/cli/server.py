"""Commands about a running server: ``serve`` runs one, ``smoke`` checks a deployment end to end."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from loist.cli import render
from loist.cli.render import JsonOpt
from loist.cli.runner import finish, guarded, run, settings


def serve(
    transport: Annotated[str | None, typer.Option(help="stdio or http (default: SERVER_TRANSPORT).")] = None,
    host: Annotated[str | None, typer.Option(help="Bind address for http (default: SERVER_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port for http (default: PORT).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Announce the endpoints as one JSON line and log JSON lines (stderr).")
    ] = False,
) -> None:
    """Serve the library: MCP (stdio or streamable HTTP at /mcp) plus the web routes."""
    chosen = {"server_transport": transport, "server_host": host, "port": port}
    overrides: dict[str, Any] = {name: value for name, value in chosen.items() if value is not None}
    if as_json:
        overrides["log_format"] = "json"
    loaded = settings(as_json, **overrides)
    from loist.serve import serve as run_server

    guarded(as_json, lambda: run_server(loaded, as_json=as_json))


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

    report = run(as_json, lambda: run_smoke(base_url, token=token, audio_url=audio_url, timeout_s=timeout))
    render.smoke_report(report, as_json)
    finish(not report.ok)
