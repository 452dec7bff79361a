"""Which ``OTEL_*`` settings turn tracing on, and what happens when the exporter cannot be built."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from loist.config import Settings


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, None),
        ({"otel_traces_exporter": "none", "otel_exporter_otlp_endpoint": "http://127.0.0.1:4318"}, None),
        ({"otel_exporter_otlp_endpoint": "http://127.0.0.1:4318"}, "otlp"),
        ({"otel_exporter_otlp_traces_endpoint": "http://127.0.0.1:4318/v1/traces"}, "otlp"),
        ({"otel_traces_exporter": "GCP_TRACE"}, "gcp_trace"),
        ({"otel_traces_exporter": "console"}, "console"),
    ],
)
def test_the_exporter_the_settings_name(values: dict[str, str], expected: str | None) -> None:
    assert Settings(_env_file=None, **values).traces_exporter == expected  # type: ignore[arg-type]


def test_an_unknown_exporter_is_a_configuration_problem() -> None:
    problems = Settings(_env_file=None, otel_traces_exporter="jaeger").problems()  # type: ignore[call-arg]
    assert any("OTEL_TRACES_EXPORTER" in problem for problem in problems)


def test_cloud_trace_without_credentials_logs_and_serves_untraced(tmp_path: os.PathLike[str]) -> None:
    code = (
        "from loist.config import Settings\n"
        "from loist.telemetry import tracing\n"
        "assert tracing.configure(Settings(_env_file=None)) is False\n"
        "assert tracing.configure(Settings(_env_file=None, otel_traces_exporter='gcp_trace', google_cloud_project='p')) is False\n"
        "assert not tracing.active()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GOOGLE_"))}
    env.update(GOOGLE_APPLICATION_CREDENTIALS=str(tmp_path) + "/missing.json", NO_GCE_CHECK="true")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "tracing is off: the gcp_trace span exporter could not be built" in done.stderr
