"""Telemetry: the app's Prometheus metrics, OpenTelemetry traces and the trace id its logs carry.

A foundation unit: engines, services and entry points all report into it, and it imports nothing
of theirs. Everything is off until :func:`loist.telemetry.setup.start` turns it on (``loist
serve`` does): until then every reporting function is a no-op that costs one global look-up, and
neither ``prometheus_client`` nor the OpenTelemetry SDK is imported, so CLI start-up does not pay
for them.

- :mod:`loist.telemetry.metrics`: the metric families (the only place they are named) and the
  functions hot paths call to report into them.
- :mod:`loist.telemetry.listener`: the metrics listener (``METRICS_HOST``:``METRICS_PORT``), never
  the public port; multi-process aggregation when several web workers share one listener.
- :mod:`loist.telemetry.tracing`: the OpenTelemetry SDK from the standard ``OTEL_*`` variables
  (OTLP, or Cloud Trace with ``OTEL_TRACES_EXPORTER=gcp_trace``), and :func:`span`.
- :mod:`loist.telemetry.context`: the current request's trace id (from the span, or from an
  incoming ``traceparent`` / ``X-Cloud-Trace-Context`` header when tracing is off) for log lines.
- :mod:`loist.telemetry.setup`: turning it all on and off for one process.

See ``docs/observability.md``.
"""
