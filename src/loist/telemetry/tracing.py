"""OpenTelemetry traces: off unless the standard ``OTEL_*`` variables ask for them.

:func:`configure` installs the SDK's tracer provider once per process, with the exporter
``OTEL_TRACES_EXPORTER`` names: ``otlp`` (OTLP over HTTP/protobuf, to ``OTEL_EXPORTER_OTLP_*``),
``gcp_trace`` (Cloud Trace, in ``GOOGLE_CLOUD_PROJECT`` or ``GCS_PROJECT_ID``) or ``console``
(stderr: stdout belongs to MCP over stdio). The SDK reads the rest itself (sampler, resource
attributes, headers). Incoming context is read from ``traceparent`` and from Google's
``X-Cloud-Trace-Context``; outgoing calls carry ``traceparent``.

Spans come from: the HTTP middleware (one server span per request, ``loist.web.observe``), the
MCP SDK (one per JSON-RPC message, through the global provider), database statements
(:func:`watch_engine`), blob-store operations (``loist.storage.observed``) and ingest stages,
among them the URL fetch (``loist.telemetry.metrics.stage``). Nothing of the SDK is imported
while tracing is off, and :func:`span` is then an empty context manager.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from loist import __version__

if TYPE_CHECKING:
    from loist.config import Settings

log = logging.getLogger(__name__)

SERVICE_NAME = "loist"
MAX_STATEMENT_CHARS = 2000

_tracer: Any = None  # an SDK tracer while tracing is on
_provider: Any = None


def active() -> bool:
    return _tracer is not None


def configure(settings: Settings, exporter: Any = None) -> bool:
    """Turn tracing on when the settings name an exporter (or a test hands one in); once per
    process. Returns whether tracing is on."""
    global _tracer, _provider
    if _tracer is not None:
        return True
    kind = settings.traces_exporter
    if kind is None and exporter is None:
        return False
    from opentelemetry import propagate, trace
    from opentelemetry.baggage.propagation import W3CBaggagePropagator
    from opentelemetry.propagators.cloud_trace_propagator import CloudTraceFormatPropagator
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    try:
        exporter = exporter or _exporter(kind or "otlp", settings)
    except Exception as exc:  # noqa: BLE001 - e.g. no Google credentials: serve on, untraced, and say why
        log.error("tracing is off: the %s span exporter could not be built: %s", kind, exc)
        return False
    resource = Resource.create({"service.version": __version__})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    propagate.set_global_textmap(CompositePropagator(
        [TraceContextTextMapPropagator(), W3CBaggagePropagator(), CloudTraceFormatPropagator()]
    ))
    _provider, _tracer = provider, provider.get_tracer("loist", __version__)
    return True


def _exporter(kind: str, settings: Settings) -> Any:
    if kind == "gcp_trace":
        from opentelemetry.exporter.cloud_trace import CloudTraceSpanExporter

        return CloudTraceSpanExporter(project_id=settings.trace_project)
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def flush() -> None:
    """Export the spans still buffered (at shutdown; tests)."""
    if _provider is not None:
        _provider.force_flush()


@contextmanager
def span(name: str, attributes: dict[str, Any] | None = None) -> Iterator[Any]:
    """An internal span around the block while tracing is on (an exception marks it failed)."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def start_server_span(method: str, headers: list[tuple[bytes, bytes]]) -> tuple[Any, Any]:
    """Open the server span of one HTTP request, child of the caller's trace (from its headers), and
    make it current; returns what :func:`end_server_span` needs. Call only while tracing is on."""
    from opentelemetry import context, propagate, trace
    from opentelemetry.trace import SpanKind

    carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
    span = _tracer.start_span(
        method, context=propagate.extract(carrier), kind=SpanKind.SERVER, attributes={"http.request.method": method}
    )
    return span, context.attach(trace.set_span_in_context(span))


def end_server_span(
    opened: tuple[Any, Any], method: str, route: str, status: int, error: BaseException | None
) -> None:
    """Name the span after its route, record the status (and the error, if the app raised), end it."""
    from opentelemetry import context
    from opentelemetry.trace import Status, StatusCode

    span, token = opened
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if error is not None:
        span.record_exception(error)
    if error is not None or status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    context.detach(token)
    span.end()


def current_ids() -> tuple[str, str, bool] | None:
    """The active span's trace id, span id (hex) and sampled flag while tracing is on."""
    if _tracer is None:
        return None
    from opentelemetry.trace import get_current_span

    ctx = get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", bool(ctx.trace_flags.sampled)


def watch_engine(engine: Any) -> None:
    """A client span per statement on ``engine`` (a synchronous SQLAlchemy engine) while tracing is on.

    The statement text carries placeholders, never the values bound to them.
    """
    if _tracer is None:
        return
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from sqlalchemy import event

    system = engine.dialect.name

    def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
        span = _tracer.start_span(
            f"{verb} {system}", kind=SpanKind.CLIENT,
            attributes={"db.system.name": system, "db.query.text": statement[:MAX_STATEMENT_CHARS]},
        )
        conn.info.setdefault("loist_spans", []).append(span)

    def after(conn: Any, *_: Any) -> None:
        spans = conn.info.get("loist_spans")
        if spans:
            spans.pop().end()

    def failed(context: Any) -> None:
        spans = context.connection.info.get("loist_spans") if context.connection is not None else None
        if spans:
            current = spans.pop()
            current.set_status(Status(StatusCode.ERROR, type(context.original_exception).__name__))
            current.end()

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)
