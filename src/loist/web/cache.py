"""A small in-process TTL cache for the public pages (embed, oEmbed).

Unfurlers and busy pages hit the same few tracks again and again; caching the rendered bytes for a
few seconds keeps those routes near the server's raw speed (see docs/benchmarks.md) without a
database round-trip per request. Entries expire after ``ttl_s``, so a tag edit or a deletion shows
on the page within that time (streams are never cached: they always check the catalog).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

PAGE_CACHE_TTL_S = 10.0
PAGE_CACHE_ENTRIES = 2048
BLOB_CACHE_TTL_S = 5.0


class TTLCache(Generic[K, V]):
    """Least-recently-used, time-bounded. Single event loop: no locking needed."""

    def __init__(self, ttl_s: float = PAGE_CACHE_TTL_S, max_entries: int = PAGE_CACHE_ENTRIES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._data.get(key)
        if item is None:
            return None
        expires, value = item
        if expires <= self._clock():
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        if self.ttl_s <= 0:
            return
        self._data[key] = (self._clock() + self.ttl_s, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
