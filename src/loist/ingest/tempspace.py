"""The temporary-space budget shared by every download of one process (``DOWNLOAD_TEMP_BUDGET_MB``).

A URL ingest streams the body to a temporary file that lives until the track is stored; on Cloud
Run that file system is memory, so six concurrent 500 MB downloads once took 2.9 GB. Each download
holds a :class:`Reservation` on one :class:`TempBudget`: the announced ``Content-Length`` up
front (refused before a byte of the body is read), then as many bytes as it has written, chunk by
chunk (a body without a length, or longer than announced). The reservation is released when the
temporary file is gone (:func:`loist.ingest.fetch.download_to_temp`), on every path.

When the budget would be exceeded the download fails at once with ``RATE_LIMITED`` (retryable:
the space frees up as other downloads finish) rather than waiting: a download that waits with
part of the budget held can deadlock with another one doing the same, and a stalled body keeps a
server connection open for nothing. A download that could never fit (larger than the whole
budget) is ``SIZE_EXCEEDED``; a valid configuration never lets that happen, since the budget is
at least ``MAX_FILE_SIZE_MB``.
"""

from __future__ import annotations

import threading

from loist.errors import RateLimited, SizeExceeded

MIB = 1024 * 1024


class TempBudget:
    """At most ``limit_bytes`` of download temp space held at once, across threads and tasks."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes <= 0:
            raise ValueError("the temp-space budget must be positive")
        self.limit_bytes = limit_bytes
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        """Bytes reserved right now (0 when no download is running)."""
        with self._lock:
            return self._used

    def reservation(self) -> Reservation:
        """A new, empty reservation; use it as a context manager so it is always released."""
        return Reservation(self)

    def _grow(self, extra: int, total: int) -> None:
        with self._lock:
            if total > self.limit_bytes:
                raise SizeExceeded(
                    f"the download needs {total} bytes of temporary space, more than the whole "
                    f"{self.limit_bytes}-byte budget (DOWNLOAD_TEMP_BUDGET_MB)",
                    details={"needed_bytes": total, "budget_bytes": self.limit_bytes},
                )
            if self._used + extra > self.limit_bytes:
                raise RateLimited(
                    f"not enough temporary space for this download right now: {self._used} of "
                    f"{self.limit_bytes} bytes are held by other downloads and it needs {extra} more; "
                    "try again when they finish",
                    details={
                        "retryable": True,
                        "needed_bytes": extra,
                        "in_use_bytes": self._used,
                        "budget_bytes": self.limit_bytes,
                    },
                )
            self._used += extra

    def _shrink(self, amount: int) -> None:
        with self._lock:
            self._used -= amount


class Reservation:
    """The bytes of a :class:`TempBudget` one download holds."""

    def __init__(self, budget: TempBudget) -> None:
        self.budget = budget
        self.held = 0

    def hold(self, nbytes: int) -> None:
        """Hold exactly ``nbytes`` from now on: grow (RATE_LIMITED if the budget cannot) or shrink."""
        if nbytes > self.held:
            self.budget._grow(nbytes - self.held, nbytes)
        elif nbytes < self.held:
            self.budget._shrink(self.held - nbytes)
        self.held = nbytes

    def ensure(self, nbytes: int) -> None:
        """Hold at least ``nbytes`` (a no-op while the up-front reservation covers them)."""
        if nbytes > self.held:
            self.hold(nbytes)

    def release(self) -> None:
        self.hold(0)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
