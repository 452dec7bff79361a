"""The app's Prometheus metric families, and the functions the hot paths report through.

Every family is named here and nowhere else (``docs/observability.md`` lists them; a test scrapes
a running server and checks that list). They exist only once :func:`enable` has run (``loist
serve`` with ``METRICS_PORT`` set, or a test): before that each reporting function returns after
one global look-up and ``prometheus_client`` is not even imported, so the CLI pays nothing.

Labels are bounded by construction: a route *template* (``/embed/{id}``, never the path), a method
from a fixed set, a registered tool name, a stable error code, an engine or backend name. No track
id, URL, query or token ever becomes a label value.

Several processes: the families are plain ``prometheus_client`` objects, so when
``PROMETHEUS_MULTIPROC_DIR`` is set before :func:`enable` imports the client (see
:mod:`loist.telemetry.listener`), every worker process writes its samples to that folder and the
one listener sums them. Bulk-ingest analysis workers report nothing themselves: the parent counts
their files from the outcomes it receives (``loist.library.pipeline``).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loist import __version__
from loist.errors import ErrorCode, LoistError
from loist.telemetry import instruments, tracing

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

OK = "ok"
UNMATCHED = "unmatched"  # the route label of a request no route matched (a 404 of the router)
UNKNOWN_TOOL = "unknown"  # the tool label of a call naming no registered tool
OTHER_METHOD = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Bucket bounds in seconds, per kind of work (the default buckets stop at 10 s and start at 5 ms).
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
TOOL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
INGEST_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
SEARCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Families:
    """The metric families of one process (built once, by :func:`enable`)."""

    def __init__(self, registry: CollectorRegistry, *, shared: bool = False) -> None:
        from prometheus_client import Gauge

        made: list[instruments.Counter | instruments.Histogram | instruments.RequestTimes] = []

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> instruments.Counter:
            mirror = None
            if shared:
                from prometheus_client import Counter

                mirror = Counter(name, doc, labels, registry=None)
            made.append(instruments.Counter(name, doc, labels, shared=mirror))
            return made[-1]  # type: ignore[return-value]

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> instruments.Histogram:
            mirror = None
            if shared:
                from prometheus_client import Histogram

                mirror = Histogram(name, doc, labels, buckets=buckets, registry=None)
            made.append(instruments.Histogram(name, doc, labels, buckets, shared=mirror))
            return made[-1]  # type: ignore[return-value]

        requests = ("loist_http_requests", "HTTP requests answered, by route template, method and status.")
        duration = ("loist_http_request_duration_seconds",
                    "Time from a request's arrival to the end of its response body, by route template and method.")
        mirrors = None
        if shared:
            from prometheus_client import Counter, Histogram

            mirrors = (Counter(*requests, ("route", "method", "status"), registry=None),
                       Histogram(*duration, ("route", "method"), buckets=HTTP_BUCKETS, registry=None))
        self.http = instruments.RequestTimes(requests, duration, HTTP_BUCKETS, shared=mirrors)
        made.append(self.http)
        self.tool_calls = counter(
            "loist_mcp_tool_calls", "MCP tool calls, by tool and outcome (ok or the stable error code).",
            ("tool", "outcome"))
        self.tool_duration = histogram(
            "loist_mcp_tool_duration_seconds", "Time an MCP tool call took, by tool.", ("tool",), TOOL_BUCKETS)
        self.ingests = counter(
            "loist_ingest", "Ingests finished, by source (url, file) and outcome (ok or the error code).",
            ("source", "outcome"))
        self.ingest_duration = histogram(
            "loist_ingest_duration_seconds",
            "Time one ingest spent in a stage (fetch, analyze, store, catalog).", ("stage",), INGEST_BUCKETS)
        self.ingest_bytes = counter("loist_ingest_bytes", "Bytes of audio successfully ingested.")
        self.search_duration = histogram(
            "loist_search_duration_seconds", "Time one catalog search took, by engine (sqlite, postgresql).",
            ("engine",), SEARCH_BUCKETS)
        self.storage_ops = counter(
            "loist_storage_operations",
            "Blob-store operations, by backend (local, gcs), operation and outcome (ok or the error code).",
            ("backend", "op", "outcome"))
        if shared:  # several workers: the client writes their files; each writes its pools every second
            self.pool_connections = Gauge(
                POOL_CONNECTIONS, POOL_CONNECTIONS_DOC, ("state",), registry=None, multiprocess_mode="livesum")
            self.pool_size = Gauge(POOL_SIZE, POOL_SIZE_DOC, registry=None, multiprocess_mode="livesum")
            self.pool_refresher = PoolRefresher(self)
            self.pool_refresher.start()
        else:  # one process: everything is read at each scrape, nothing of it on the hot path
            registry.register(instruments.Collector(made))
            registry.register(PoolCollector())
        self.build_info = Gauge(
            "loist_build_info", "Always 1; the version label says which build is running.",
            ("version",), registry=registry, multiprocess_mode="max")
        self.build_info.labels(version=__version__).set(1)


_families: Families | None = None


def enable(registry: CollectorRegistry | None = None, *, shared: bool = False) -> Families:
    """Create the families (once per process; later calls return the same ones).

    ``registry``: where they register, the client's default registry (with its process and
    platform collectors) unless a caller passes one. ``shared``: this process is one of several
    workers writing to ``PROMETHEUS_MULTIPROC_DIR``.
    """
    global _families
    if _families is None:
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        _families = Families(registry, shared=shared)
    return _families


def active() -> Families | None:
    """The families when metrics are on, else None."""
    return _families


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


def outcome_of(exc: BaseException | None) -> str:
    """``ok``, the stable code of a :class:`LoistError`, or ``INTERNAL`` for anything else."""
    if exc is None:
        return OK
    return str(exc.code) if isinstance(exc, LoistError) else str(ErrorCode.INTERNAL)


# --- what the hot paths call ---------------------------------------------------------------------


def http_request(route: str, method: str, status: int, seconds: float) -> None:
    """One answered request (from the event loop's thread only: see ``instruments.RequestTimes``)."""
    f = _families
    if f is not None:
        f.http.record(route, method if method in METHODS else OTHER_METHOD, status, seconds)


def tool_call(tool: str, outcome: str, seconds: float) -> None:
    f = _families
    if f is not None:
        f.tool_calls.inc((tool, outcome))
        f.tool_duration.observe((tool,), seconds)


def storage_op(backend: str, op: str, outcome: str) -> None:
    f = _families
    if f is not None:
        f.storage_ops.inc((backend, op, outcome))


def search_took(engine: str, seconds: float) -> None:
    f = _families
    if f is not None:
        f.search_duration.observe((engine,), seconds)


def ingest_finished(source: str, outcome: str, nbytes: int | None = None) -> None:
    f = _families
    if f is not None:
        f.ingests.inc((source, outcome))
        if outcome == OK and nbytes:
            f.ingest_bytes.inc((), nbytes)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time one ingest stage (``fetch``, ``analyze``, ``store``, ``catalog``), failed or not, and
    trace it as a span ``ingest.<stage>`` while tracing is on."""
    if _families is None and not tracing.active():
        yield
        return
    started = time.perf_counter()
    try:
        with tracing.span(f"ingest.{name}"):
            yield
    finally:
        if _families is not None:
            _families.ingest_duration.observe((name,), time.perf_counter() - started)


@dataclass
class IngestRecord:
    """What an :func:`ingesting` block reports on success: the bytes it ingested."""

    nbytes: int | None = None


@contextmanager
def ingesting(source: str) -> Iterator[IngestRecord]:
    """Count one ingest from ``source`` when the block ends: ``ok`` (with the bytes the block set on
    the record) or the code of the error it raised. A cancelled ingest is not counted."""
    record = IngestRecord()
    try:
        yield record
    except Exception as exc:
        ingest_finished(source, outcome_of(exc))
        raise
    ingest_finished(source, OK, record.nbytes)


# --- database pools ----------------------------------------------------------------------------

POOL_CONNECTIONS = "loist_db_pool_connections"
POOL_CONNECTIONS_DOC = "Database connections of this process's pools, by state (checked_out, idle, overflow)."
POOL_SIZE = "loist_db_pool_size"
POOL_SIZE_DOC = "Configured size of this process's database pools (without overflow)."
POOL_REFRESH_S = 1.0

_engines: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_pool(engine: Any) -> None:
    """Count ``engine``'s pool (a synchronous :class:`~sqlalchemy.engine.Engine`; ``dispose`` may
    replace its pool) in the pool gauges. No event listener: the numbers are read when needed."""
    _engines.add(engine)


def pool_numbers() -> dict[str, int]:
    """Checked-out, idle and overflow connections and the configured size, over every watched pool
    (pools that keep no count, such as SQLite's in-memory StaticPool, add nothing)."""
    out = {"checked_out": 0, "idle": 0, "overflow": 0, "size": 0}
    for engine in list(_engines):
        pool = engine.pool
        if hasattr(pool, "checkedout"):
            out["checked_out"] += pool.checkedout()
            out["idle"] += pool.checkedin()
            out["overflow"] += max(0, pool.overflow())
            out["size"] += pool.size()
    return out


class PoolCollector:
    """The pool gauges, read from the pools at each scrape (one process)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        numbers = pool_numbers()
        connections = GaugeMetricFamily(POOL_CONNECTIONS, POOL_CONNECTIONS_DOC, labels=["state"])
        for state in ("checked_out", "idle", "overflow"):
            connections.add_metric([state], numbers[state])
        yield connections
        yield GaugeMetricFamily(POOL_SIZE, POOL_SIZE_DOC, value=numbers["size"])


class PoolRefresher:
    """Several workers: a daemon thread that writes this worker's pool numbers every second."""

    def __init__(self, families: Families) -> None:
        self.families = families

    def start(self) -> None:
        import threading

        threading.Thread(target=self._run, name="loist-pool-gauges", daemon=True).start()

    def _run(self) -> None:
        while True:
            self.refresh()
            time.sleep(POOL_REFRESH_S)

    def refresh(self) -> None:
        numbers = pool_numbers()
        for state in ("checked_out", "idle", "overflow"):
            self.families.pool_connections.labels(state).set(numbers[state])
        self.families.pool_size.set(numbers["size"])
