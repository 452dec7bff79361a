"""What every web route needs: the settings, the opened library and the template environment.

One :class:`WebContext` is built per app by :func:`loist.web.app.create_app` and handed to the
route factories, so handlers close over it instead of reaching for globals. The library lives in
a :class:`~loist.library.holder.LibraryHolder` the app's lifespan keeps open (it is opened
asynchronously), which is why it is a property that fails loudly when a request arrives before
startup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import jinja2

from loist.config import Settings
from loist.library.holder import LibraryHolder
from loist.storage.base import BlobInfo
from loist.web.assets import InlineAssets, load_assets
from loist.web.cache import BLOB_CACHE_TTL_S, TTLCache

if TYPE_CHECKING:
    from loist.library.service import Library


@dataclass
class WebContext:
    settings: Settings
    templates: jinja2.Environment
    holder: LibraryHolder
    assets: InlineAssets = field(default_factory=load_assets)
    pages: TTLCache[tuple[str, ...], bytes] = field(default_factory=TTLCache)  # rendered embed/oEmbed bodies
    blobs: TTLCache[tuple[str, str], BlobInfo] = field(
        default_factory=lambda: TTLCache(ttl_s=BLOB_CACHE_TTL_S)
    )  # track -> stat of its audio/thumbnail blob
    extra_media_origins: set[str] = field(default_factory=set)  # e.g. the GCS host signed URLs point at

    @property
    def library(self) -> Library:
        return self.holder.library

    @property
    def base_url(self) -> str:
        return self.settings.public_base_url

    @property
    def site_name(self) -> str:
        """The name unfurls and the landing page show: ``SERVER_NAME`` when it was set, else the
        public host people see in the link (``music.example.com``), never the MCP default name."""
        if "server_name" in self.settings.model_fields_set:
            return self.settings.server_name
        return urlsplit(self.base_url).netloc or self.settings.server_name


def make_templates() -> jinja2.Environment:
    """The Jinja2 environment for the HTML pages. Autoescaping is always on."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("loist.web", "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )

