"""Where blocking storage work runs: a bounded pool of its own, and a separate thread for the probe.

Blob stores are synchronous (the Google client is), so every store call runs in a worker thread.
Those calls can wait on a slow or dead service for seconds (bounded by the store's deadlines), so
they must not share threads with anything else: with asyncio's default executor (a handful of
threads on a small instance) or Starlette's thread pool, a dozen hung stream requests used to
starve the health check, DNS look-ups and page renders. Every storage call of the library, the
ingest pipeline, the web routes and the MCP resources goes through :meth:`StoragePool.run` (at most
``STORAGE_THREADS`` at once; more wait for a slot, and nothing else waits for them).

The readiness probe never waits for a slot: :meth:`StoragePool.probe` runs it in a thread of its
own with a hard timeout. A probe still hung from an earlier check is joined rather than repeated,
so a dead storage costs one thread, not one per health request.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import anyio
import anyio.to_thread

T = TypeVar("T")


class StoragePool:
    """At most ``size`` blocking storage calls at once, apart from every other thread pool."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the storage pool needs at least one thread")
        self.size = size
        self._limiter = anyio.CapacityLimiter(size)
        self._probe_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loist-storage-probe")
        self._probe: Future[Any] | None = None

    @property
    def busy(self) -> int:
        """Calls running now (each holds a slot)."""
        return int(self._limiter.borrowed_tokens)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` in a storage thread, waiting for a free slot first.

        Like Starlette's ``run_in_threadpool``, a cancelled caller waits for the call to end (a
        store call is bounded by its deadlines), so an iterator is never used by two threads.
        """
        call = functools.partial(fn, *args, **kwargs) if kwargs else fn
        return await anyio.to_thread.run_sync(call, *(() if kwargs else args), limiter=self._limiter)

    async def probe(self, fn: Callable[[], object], timeout_s: float) -> None:
        """Run ``fn`` in the probe's own thread; ``TimeoutError`` if it has not finished in ``timeout_s``.

        Never waits for a storage slot. If the previous probe is still running (hung on a dead
        service), this one waits for that same call instead of starting another.
        """
        if self._probe is None or self._probe.done():
            self._probe = self._probe_thread.submit(fn)
        await asyncio.wait_for(asyncio.wrap_future(self._probe), timeout_s)

    def close(self) -> None:
        """Stop the probe thread once it is idle (a hung probe ends with its own deadline)."""
        self._probe_thread.shutdown(wait=False, cancel_futures=True)
