"""Labelled counters and histograms cheap enough for a request that takes tens of microseconds.

Why not ``prometheus_client``'s own: an embed page costs the server about 70 µs of CPU, and its
``Counter`` + ``Histogram`` (``labels()``, a lock per value, exemplar checks) and pool gauges
read on every checkout added about 7 µs to that, 9-11 %, measured with
``bench/telemetry_overhead.py``. These keep one plain dict per family under one
lock (a label tuple -> a number, or bucket counts and a sum), and turn it into Prometheus families
only when scraped (:class:`Collector`), so a report is a dict update and, for a histogram, a
``bisect``. ``docs/benchmarks.md`` has the figures.

Several worker processes: an instrument built with ``shared`` (the client's multi-process
``Counter`` / ``Histogram``) hands every report to it instead, so the values land in the workers'
files where the parent's listener sums them; that path costs what the client costs.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

Key = tuple[Any, ...]  # label values, in the order of the instrument's label names


class Counter:
    """A monotonic count per label set."""

    def __init__(self, name: str, doc: str, labels: Sequence[str] = (), *, shared: Any = None) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.values: dict[Key, float] = {}
        self._lock = threading.Lock()
        self._shared = shared

    def inc(self, key: Key = (), amount: float = 1) -> None:
        if self._shared is not None:
            (self._shared.labels(*key) if key else self._shared).inc(amount)
            return
        with self._lock:
            self.values[key] = self.values.get(key, 0) + amount

    def family(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        with self._lock:
            items = list(self.values.items())
        for key, value in items:
            family.add_metric([str(part) for part in key], value)
        return family


class Histogram:
    """Observations per label set, counted in buckets with upper bounds ``bounds`` (and +Inf)."""

    def __init__(
        self, name: str, doc: str, labels: Sequence[str], bounds: Sequence[float], *, shared: Any = None
    ) -> None:
        self.name, self.doc, self.labels = name, doc, tuple(labels)
        self.bounds = tuple(sorted(bounds))
        self.series: dict[Key, list[float]] = {}  # per label set: a count per bucket, +Inf's, then the sum
        self._lock = threading.Lock()
        self._shared = shared

    def observe(self, key: Key, value: float) -> None:
        if self._shared is not None:
            self._shared.labels(*key).observe(value)
            return
        slot = bisect_left(self.bounds, value)  # the first bound >= value: Prometheus's "le"
        with self._lock:
            counts = self.series.get(key)
            if counts is None:
                counts = self.series[key] = [0.0] * (len(self.bounds) + 2)
            counts[slot] += 1
            counts[-1] += value

    def family(self) -> Any:
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        with self._lock:
            items = [(key, list(counts)) for key, counts in self.series.items()]
        for key, counts in items:
            buckets: list[tuple[str, float]] = []
            total = 0.0
            for bound, count in zip((*self.bounds, float("inf")), counts[:-1], strict=True):
                total += count
                buckets.append((floatToGoString(bound), total))
            family.add_metric([str(part) for part in key], buckets, counts[-1])
        return family


class RequestTimes:
    """HTTP requests: counted by (route, method, status) and timed by (route, method), in one update.

    One histogram per (route, method, status) holds both: its total is the request counter, and its
    buckets summed over the statuses are the duration histogram. Only the event loop's thread
    records (the web middleware), so there is no lock; a scrape copies what it reads.
    """

    def __init__(self, counter: tuple[str, str], histogram: tuple[str, str], bounds: Sequence[float], *,
                 shared: tuple[Any, Any] | None = None) -> None:
        self.counter, self.histogram = counter, histogram  # (name, doc) of each family
        self.bounds = tuple(sorted(bounds))
        self.series: dict[Key, list[float]] = {}
        self._shared = shared

    def record(self, route: str, method: str, status: int, seconds: float) -> None:
        if self._shared is not None:
            self._shared[0].labels(route, method, status).inc()
            self._shared[1].labels(route, method).observe(seconds)
            return
        counts = self.series.get((route, method, status))
        if counts is None:
            counts = self.series[(route, method, status)] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, seconds)] += 1
        counts[-1] += seconds

    def families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily

        requests = CounterMetricFamily(*self.counter, labels=("route", "method", "status"))
        timed = Histogram(*self.histogram, ("route", "method"), self.bounds)
        for (route, method, status), counts in list(self.series.items()):
            counts = list(counts)
            requests.add_metric([route, method, str(status)], sum(counts[:-1]))
            merged = timed.series.setdefault((route, method), [0.0] * len(counts))
            for slot, count in enumerate(counts):
                merged[slot] += count
        yield requests
        yield timed.family()


class Collector:
    """Exposes instruments to a ``prometheus_client`` registry (read at each scrape)."""

    def __init__(self, instruments: Sequence[Counter | Histogram | RequestTimes]) -> None:
        self.instruments = list(instruments)

    def collect(self) -> Iterator[Any]:
        for instrument in self.instruments:
            if isinstance(instrument, RequestTimes):
                yield from instrument.families()
            else:
                yield instrument.family()

    def describe(self) -> list[Any]:
        return []  # families are built at each collect (the registry must not collect at register time)
