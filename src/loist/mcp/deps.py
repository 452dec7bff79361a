"""What the tools and resources of one server share: settings, transport and the library.

The library is either handed in — as an object, or as a zero-argument callable when its owner (the
web app) opens it later in its own lifespan — or, when none is given, opened by the server's
lifespan and closed when the last user leaves, so stdio and in-memory servers work with nothing but
a :class:`~loist.config.Settings`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

import anyio

from loist.config import Settings

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


def search_uri(query: str) -> str:
    return f"{URI_SCHEME}://library/search?q={quote(query, safe='')}"


@dataclass
class Deps:
    settings: Settings
    transport: Transport
    provider: Callable[[], Library] | None = None
    _library: Library | None = None
    _owned: bool = False
    _users: int = 0
    _lock: anyio.Lock = field(default_factory=anyio.Lock)

    @property
    def library(self) -> Library:
        if self.provider is not None:
            return self.provider()
        if self._library is None:
            raise RuntimeError("the MCP server's library is not open (server used outside its lifespan)")
        return self._library

    async def acquire(self) -> None:
        """Open the library on first use when none was handed in."""
        if self.provider is not None:
            return
        async with self._lock:
            self._users += 1
            if self._library is None:
                from loist.library.service import Library  # deferred: keeps `import loist.mcp` light

                self._library = await Library.open(self.settings)
                self._owned = True

    async def release(self) -> None:
        if self.provider is not None:
            return
        async with self._lock:
            self._users -= 1
            if self._users == 0 and self._owned and self._library is not None:
                library, self._library, self._owned = self._library, None, False
                await library.close()
