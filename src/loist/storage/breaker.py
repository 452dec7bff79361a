"""A circuit breaker for a remote blob store: stop calling a service that is not answering.

Every call to Cloud Storage already retries within its deadline (``GCS_READ_DEADLINE_S`` /
``GCS_RETRY_DEADLINE_S``), so a call that still fails with a transport error (refused, timed out,
5xx) has seen the service down for seconds. After ``threshold`` such calls in a row the breaker
*opens*: for ``cooldown_s`` every call fails at once with ``STORAGE_FAILED`` instead of waiting out
its own deadline, which is what lets a bulk ingest against a dead bucket finish in seconds and keeps
stream requests from each holding a storage thread. When the cool-down ends one call (the *trial*)
goes through while the others still fail at once; its success closes the breaker, its failure opens
it again. An answer of any kind (an object, a 404, a 403) is a success: the service is reachable.

Thread-safe: one breaker per store instance, shared by every thread that uses the store.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from loist.errors import StorageFailed


class CircuitBreaker:
    """Open after ``threshold`` consecutive failed calls; fail fast for ``cooldown_s``; then one trial."""

    def __init__(
        self, threshold: int, cooldown_s: float, *, name: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if threshold < 1 or cooldown_s <= 0:
            raise ValueError("a circuit breaker needs threshold >= 1 and cooldown_s > 0")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self.name = name  # what is unreachable, for the message: "Cloud Storage bucket 'x'"
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._last_error = ""
        self._opened_at: float | None = None
        self._trial = False  # a trial call is in flight

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    @property
    def failures(self) -> int:
        """Consecutive failed calls so far."""
        with self._lock:
            return self._failures

    def enter(self) -> None:
        """Before a call: return to go ahead, or raise ``StorageFailed`` at once while open."""
        with self._lock:
            if self._opened_at is None:
                return
            waited = self._clock() - self._opened_at
            if waited >= self.cooldown_s and not self._trial:
                self._trial = True  # this call is the trial; the others keep failing fast
                return
            left = max(0.0, self.cooldown_s - waited)
            raise StorageFailed(
                f"{self.name} is unreachable: {self._failures} calls in a row failed (the last: "
                f"{self._last_error}); calls fail at once for {left:.0f} s more, then one is tried",
                details={"breaker": "open", "consecutive_failures": self._failures},
            )

    def succeeded(self) -> None:
        """The call got an answer: close the breaker."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial = False

    def failed(self, error: str) -> None:
        """The call found the service unreachable (after its own retries)."""
        with self._lock:
            self._failures += 1
            self._last_error = error
            self._trial = False
            if self._failures >= self.threshold:
                self._opened_at = self._clock()

    def released(self) -> None:
        """The call ended without telling either way (interrupted): let the next call be a trial."""
        with self._lock:
            self._trial = False
