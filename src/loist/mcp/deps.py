"""What the tools and resources of one server share: settings, transport and the library.

The library lives in a :class:`~loist.library.holder.LibraryHolder`. A server handed an open
library, or nothing, owns its holder: its lifespan enters :meth:`LibraryHolder.opened`, which lends
the given library, or opens one from the settings on first use and closes it when the last client
leaves (stdio and in-memory servers work with nothing but a :class:`~loist.config.Settings`). A
server handed a holder shares it with that holder's owner (the web app), who keeps it open.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from loist.config import Settings
from loist.library.holder import LibraryHolder

if TYPE_CHECKING:
    from loist.library.service import Library

Transport = Literal["stdio", "http"]

URI_SCHEME = "music-library"


def metadata_uri(track_id: object) -> str:
    return f"{URI_SCHEME}://audio/{track_id}/metadata"


def stream_uri(track_id: object) -> str:
    return f"{URI_SCHEME}://audio/{track_id}/stream"


def thumbnail_uri(track_id: object) -> str:
    return f"{URI_SCHEME}://audio/{track_id}/thumbnail"


def waveform_uri(track_id: object) -> str:
    return f"{URI_SCHEME}://audio/{track_id}/waveform"


def search_uri(query: str) -> str:
    return f"{URI_SCHEME}://library/search?q={quote(query, safe='')}"


@dataclass
class Deps:
    settings: Settings
    transport: Transport
    holder: LibraryHolder
    shared: bool = False  # the holder belongs to someone else, who keeps it open while we serve

    @property
    def library(self) -> Library:
        return self.holder.library

    @asynccontextmanager
    async def in_use(self) -> AsyncIterator[None]:
        """The server's lifespan: keep the library open while a client is connected."""
        if self.shared:
            yield
            return
        async with self.holder.opened(self.settings):
            yield
