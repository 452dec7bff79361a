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
from loist.telemetry import tracing

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

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]) -> Any:
            return Histogram(name, doc, labels, buckets=buckets, registry=registry)

        self.http_requests = counter(
            "loist_http_requests", "HTTP requests answered, by route template, method and status.",
            ("route", "method", "status"))
        self.http_duration = histogram(
            "loist_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response body, by route template and method.",
            ("route", "method"), HTTP_BUCKETS)
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
        self.pool_connections = Gauge(
            "loist_db_pool_connections",
            "Database connections of this process's pools, by state (checked_out, idle, overflow).",
            ("state",), registry=registry, multiprocess_mode="livesum")
        self.pool_size = Gauge(
            "loist_db_pool_size", "Configured size of this process's database pools (without overflow).",
            registry=registry, multiprocess_mode="livesum")
        self.build_info = Gauge(
            "loist_build_info", "Always 1; the version label says which build is running.",
            ("version",), registry=registry, multiprocess_mode="max")
        self.build_info.labels(version=__version__).set(1)
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def http_children(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        """The counter and histogram children of one label set (cached: ``labels()`` takes a lock)."""
        key = (route, method, status)
        found = self._http.get(key)
        if found is None:
            found = self._http[key] = (
                self.http_requests.labels(route, method, str(status)),
                self.http_duration.labels(route, method),
            )
        return found


_families: Families | None = None


def enable(registry: CollectorRegistry | None = None) -> Families:
    """Create the families (once per process; later calls return the same ones).

    ``registry``: where they register, the client's default registry (with its process and
    platform collectors) unless a caller passes one.
    """
    global _families
    if _families is None:
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        _families = Families(registry)
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
    f = _families
    if f is not None:
        count, duration = f.http_children(route, method_label(method), status)
        count.inc()
        duration.observe(seconds)


def tool_call(tool: str, outcome: str, seconds: float) -> None:
    f = _families
    if f is not None:
        f.tool_calls.labels(tool, outcome).inc()
        f.tool_duration.labels(tool).observe(seconds)


def storage_op(backend: str, op: str, outcome: str) -> None:
    f = _families
    if f is not None:
        f.storage_ops.labels(backend, op, outcome).inc()


def search_took(engine: str, seconds: float) -> None:
    f = _families
    if f is not None:
        f.search_duration.labels(engine).observe(seconds)


def ingest_finished(source: str, outcome: str, nbytes: int | None = None) -> None:
    f = _families
    if f is not None:
        f.ingests.labels(source, outcome).inc()
        if outcome == OK and nbytes:
            f.ingest_bytes.inc(nbytes)


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
            _families.ingest_duration.labels(name).observe(time.perf_counter() - started)


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

_engines: weakref.WeakSet[Any] = weakref.WeakSet()


def watch_pool(engine: Any) -> None:
    """Keep the pool gauges up to date from the checkout and checkin events of ``engine``'s pool
    (a synchronous :class:`~sqlalchemy.engine.Engine`; its pool may be replaced by ``dispose``).
    Pools that hold no count, such as SQLite's in-memory StaticPool, are not watched."""
    if _families is None or not hasattr(engine.pool, "checkedout"):
        return
    from sqlalchemy import event

    _engines.add(engine)
    event.listen(engine, "checkout", lambda *_: refresh_pools())
    event.listen(engine, "checkin", lambda *_: _refresh_soon())
    refresh_pools()


def _refresh_soon() -> None:
    """A checkin event fires before the connection is back in the pool: count once it is."""
    import asyncio

    try:
        asyncio.get_running_loop().call_soon(refresh_pools)
    except RuntimeError:  # no loop in this thread (a synchronous engine): count now
        refresh_pools()


def refresh_pools() -> None:
    """Set the pool gauges from every watched engine's pool as it is now."""
    f = _families
    if f is None:
        return
    out = idle = overflow = size = 0
    for engine in list(_engines):
        pool = engine.pool
        if not hasattr(pool, "checkedout"):
            continue
        out += pool.checkedout()
        idle += pool.checkedin()
        overflow += max(0, pool.overflow())
        size += pool.size()
    f.pool_connections.labels("checked_out").set(out)
    f.pool_connections.labels("idle").set(idle)
    f.pool_connections.labels("overflow").set(overflow)
    f.pool_size.set(size)
