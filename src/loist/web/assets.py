"""The embed page's inline CSS and JS, loaded once per app, with their CSP hashes.

Inline code is allowed by ``sha256`` hashes in the page's ``Content-Security-Policy`` rather than
per-response nonces: the page is then identical for every request, so it can be cached (see
:mod:`loist.web.cache`), and the policy still refuses any script or style we did not ship.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from importlib.resources import files

from markupsafe import Markup


def csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


@dataclass(frozen=True)
class InlineAssets:
    player_css: Markup
    player_js: Markup
    error_css: Markup
    landing_css: Markup

    @property
    def style_hashes(self) -> str:
        return f"{csp_hash(self.player_css)} {csp_hash(self.error_css)}"

    @property
    def script_hashes(self) -> str:
        return csp_hash(self.player_js)


def load_assets() -> InlineAssets:
    folder = files("loist.web") / "templates"

    def read(name: str) -> Markup:
        # Markup: the template inserts it verbatim (it is our code, not user input).
        return Markup((folder / name).read_text(encoding="utf-8"))  # noqa: S704  # nosec B704

    return InlineAssets(read("player.css"), read("player.js"), read("error.css"), read("landing.css"))
