"""The in-chat player: an MCP App (extension ``io.modelcontextprotocol/ui``) that hosts render in
the conversation.

``ui://loist/player.html`` is one self-contained HTML document (``static/player-app.html``, served
as ``text/html;profile=mcp-app``). ``get_audio_metadata``, ``search_library`` and
``process_audio_complete`` name it in ``_meta.ui.resourceUri`` (:data:`UI_META`); a host that
supports MCP Apps renders it in a sandboxed iframe and hands it the tool's result, and hosts that do
not still get the tools' full text and structured results. The app speaks the host protocol over
``postMessage`` (``ui/initialize``, ``ui/notifications/initialized``, ``ui/notifications/tool-result``,
``ui/notifications/size-changed``, ``tools/call`` and ``resources/read`` through the host), plays the
stable ``/audio/{id}/stream`` URL and draws the waveform.

Its CSP metadata admits exactly what it loads: the server's public origin (stream, artwork,
waveform JSON) and, with Cloud Storage, the storage host streams redirect to (signed URLs).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Any

from mcp.server.apps import Apps, ResourceCsp

from loist.config import Settings
from loist.web.security import origin_of

PLAYER_URI = "ui://loist/player.html"
UI_META: dict[str, Any] = {"ui": {"resourceUri": PLAYER_URI}}  # on the tools that show the player
GCS_ORIGIN = "https://storage.googleapis.com"  # where a signed stream URL points (V4 signing, path style)


@cache
def player_html() -> str:
    return files("loist.mcp").joinpath("static/player-app.html").read_text(encoding="utf-8")


def player_csp(settings: Settings) -> ResourceCsp:
    """The origins the app needs: ours for everything, plus Cloud Storage for redirected media."""
    ours = origin_of(settings.public_base_url)
    media = [ours, GCS_ORIGIN] if settings.storage_backend == "gcs" else [ours]
    return ResourceCsp(connect_domains=[ours], resource_domains=media)


def player_app(settings: Settings) -> Apps:
    """The Apps extension holding the player resource (the tools link to it with :data:`UI_META`)."""
    apps = Apps()
    apps.add_html_resource(
        PLAYER_URI,
        player_html(),
        name="loist-player",
        title=f"{settings.server_name} player",
        description="Plays tracks from the library in the conversation: artwork, title, artist, waveform.",
        csp=player_csp(settings),
        prefers_border=False,
    )
    return apps
