"""The page cache: entries expire, and the least recently used go first."""

from __future__ import annotations

from loist.web.cache import TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire() -> None:
    clock = Clock()
    cache: TTLCache[str, int] = TTLCache(ttl_s=10, clock=clock)
    cache.put("a", 1)
    clock.now = 9.9
    assert cache.get("a") == 1
    clock.now = 10.0
    assert cache.get("a") is None
    assert len(cache) == 0


def test_least_recently_used_is_evicted() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl_s=10, max_entries=2, clock=Clock())
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.get("b") is None and cache.get("a") == 1 and cache.get("c") == 3


def test_zero_ttl_disables_caching() -> None:
    cache: TTLCache[str, int] = TTLCache(ttl_s=0, clock=Clock())
    cache.put("a", 1)
    assert cache.get("a") is None
