"""The trace a log line belongs to: the current span's, or the caller's from the request headers.

With tracing on, it is the active OpenTelemetry span (whose parent came from the request's
``traceparent`` or ``X-Cloud-Trace-Context``). With tracing off, the HTTP middleware still reads
those headers (:func:`from_headers`) and binds the caller's trace for the request, so Cloud
Logging groups a request's log lines under the trace Cloud Run's front end started.
"""

from __future__ import annotations

import re
from contextvars import ContextVar, Token
from dataclasses import dataclass

from loist.telemetry import tracing

_TRACEPARENT = re.compile(rb"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_CLOUD_TRACE = re.compile(rb"([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([01]))?")
_ZERO_TRACE = "0" * 32


@dataclass(frozen=True, slots=True)
class TraceContext:
    trace_id: str  # 32 lower-case hex digits
    span_id: str | None  # 16 hex digits
    sampled: bool


Headers = list[tuple[bytes, bytes]]
# The request's headers, read only when a log line asks (most requests log nothing but their access line).
_bound: ContextVar[Headers | None] = ContextVar("loist_trace_headers", default=None)


def from_headers(headers: list[tuple[bytes, bytes]]) -> TraceContext | None:
    """The caller's trace from ``traceparent`` (W3C) or else ``X-Cloud-Trace-Context`` (Google)."""
    cloud: bytes | None = None
    for name, value in headers:
        if name == b"traceparent":
            match = _TRACEPARENT.fullmatch(value.strip())
            if match and match[1].decode() != _ZERO_TRACE:
                return TraceContext(match[1].decode(), match[2].decode(), int(match[3], 16) & 1 == 1)
        elif name == b"x-cloud-trace-context":
            cloud = value
    if cloud is not None:
        match = _CLOUD_TRACE.fullmatch(cloud.strip())
        if match and match[1].decode().lower() != _ZERO_TRACE:
            span = f"{int(match[2]) & (2**64 - 1):016x}" if match[2] else None
            return TraceContext(match[1].decode().lower(), span, match[3] == b"1")
    return None


def bind(headers: Headers | None) -> Token[Headers | None]:
    """Make ``headers`` (a request's, ASGI form) the source of :func:`current` in this context."""
    return _bound.set(headers)


def unbind(token: Token[Headers | None]) -> None:
    _bound.reset(token)


def current() -> TraceContext | None:
    """The trace of the work running now: the active span's when tracing is on, else the caller's
    from the bound request headers."""
    ids = tracing.current_ids()
    if ids is not None:
        return TraceContext(*ids)
    headers = _bound.get()
    return from_headers(headers) if headers else None
