"""The one way an entry point holds an open :class:`~loist.library.service.Library`.

The web app, the MCP server and the CLI each need "the library", either handed to them open (tests,
an owner that shares one) or opened from :class:`~loist.config.Settings` for as long as someone uses
it. :class:`LibraryHolder` is that, written once:

- ``LibraryHolder(library)`` holds a library someone else opened: :meth:`~LibraryHolder.opened`
  lends it and never closes it;
- ``LibraryHolder()`` opens one on the first :meth:`~LibraryHolder.opened` and closes it when the
  last user leaves (reference counted, so concurrent MCP clients over stdio share one);
- :attr:`~LibraryHolder.library` returns the open library or fails loudly, naming the holder, when
  it is used outside every ``opened`` (for example a request that arrives before start-up).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio

from loist.config import Settings

if TYPE_CHECKING:
    from loist.library.service import Library


class LibraryHolder:
    """An open library shared by its users, or an empty place that opens one while it is used."""

    def __init__(self, library: Library | None = None, *, name: str = "the library") -> None:
        self._library = library
        self._given = library is not None  # handed in open: its owner closes it, never this holder
        self._users = 0
        self._lock = anyio.Lock()
        self.name = name  # how the error names this holder ("the web app's library", ...)

    @property
    def is_open(self) -> bool:
        return self._library is not None

    @property
    def library(self) -> Library:
        if self._library is None:
            raise RuntimeError(f"{self.name} is not open: used outside LibraryHolder.opened() (before start-up or after shutdown)")
        return self._library

    @asynccontextmanager
    async def opened(self, settings: Settings) -> AsyncIterator[Library]:
        """Use the library for the duration of the block, opening it from ``settings`` if needed."""
        async with self._lock:
            library = self._library
            if library is None:
                from loist.library.service import Library  # deferred: keeps `import loist.mcp` light

                library = self._library = await Library.open(settings)
            self._users += 1
        try:
            yield library
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled user still leaves, or the count drifts
                await self._leave()

    async def _leave(self) -> None:
        async with self._lock:
            self._users -= 1
            if self._users == 0 and not self._given and self._library is not None:
                library, self._library = self._library, None
                await library.close()
