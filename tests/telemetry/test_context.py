"""The caller's trace from request headers, and the JSON log fields that carry it."""

from __future__ import annotations

import json
import logging

import pytest

from loist.logs import TRACE_FIELD, JsonFormatter
from loist.telemetry import context

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"  # pragma: allowlist secret


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())], (TRACE, "00f067aa0ba902b7", True)),
        ([(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-00".encode())], (TRACE, "00f067aa0ba902b7", False)),
        # Google's header: a decimal span id, o=1 when sampled
        ([(b"x-cloud-trace-context", f"{TRACE.upper()}/1;o=1".encode())], (TRACE, "0000000000000001", True)),
        ([(b"x-cloud-trace-context", TRACE.encode())], (TRACE, None, False)),
        # traceparent wins over X-Cloud-Trace-Context, whichever comes first
        ([(b"x-cloud-trace-context", b"105445aa7843bc8bf206b12000100000/2;o=1"),
          (b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())], (TRACE, "00f067aa0ba902b7", True)),
        # malformed or all-zero: no trace (never a half-parsed one)
        ([(b"traceparent", b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01")], None),
        ([(b"traceparent", b"garbage")], None),
        ([(b"x-cloud-trace-context", b"not-hex/1;o=1")], None),
        ([], None),
    ],
)
def test_from_headers(headers: list[tuple[bytes, bytes]], expected: tuple[str, str | None, bool] | None) -> None:
    found = context.from_headers(headers)
    assert (None if found is None else (found.trace_id, found.span_id, found.sampled)) == expected


def _format(formatter: JsonFormatter, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("loist.test", logging.INFO, __file__, 1, "hello", None, None)
    record.__dict__.update(extra)
    return json.loads(formatter.format(record))


def test_json_lines_carry_the_bound_trace_with_the_project() -> None:
    token = context.bind([(b"traceparent", f"00-{TRACE}-00f067aa0ba902b7-01".encode())])
    try:
        entry = _format(JsonFormatter("my-project"))
        bare = _format(JsonFormatter(None))
    finally:
        context.unbind(token)
    assert entry[TRACE_FIELD] == f"projects/my-project/traces/{TRACE}"
    assert entry["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert entry["logging.googleapis.com/trace_sampled"] is True
    assert bare[TRACE_FIELD] == TRACE  # no project known: the bare id, still searchable
    assert TRACE_FIELD not in _format(JsonFormatter("my-project"))  # outside a request: none


def test_an_access_record_becomes_cloud_loggings_http_request() -> None:
    request = {"requestMethod": "GET", "requestUrl": "/health/live", "status": 200, "latency": "0.001000s"}
    assert _format(JsonFormatter(), http_request=request)["httpRequest"] == request
