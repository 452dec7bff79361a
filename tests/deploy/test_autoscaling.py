"""The autoscaling validation's arithmetic and its reading of Cloud Monitoring. The Monitoring API
is the Google Cloud control plane: here a canned answer stands in for it (httpx.MockTransport)."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest
from loist_infra.envspec import SIZING

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))
import autoscaling  # noqa: E402


def test_the_model_asks_for_enough_instances_within_the_stack_limits() -> None:
    per = autoscaling.PER_INSTANCE_RPS["production"]
    assert autoscaling.model_instances(per * 2.5, "production") == 3
    assert autoscaling.model_instances(per * 1000, "production") == SIZING["production"].max_instances
    assert autoscaling.model_instances(1, "production") == max(1, SIZING["production"].min_instances)


def test_series_sums_what_monitoring_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"timeSeries": [
            {"points": [{"value": {"int64Value": "3"}}, {"value": {"int64Value": "5"}}]},
            {"points": [{"value": {"doubleValue": 1.5}}]},
        ]})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    monkeypatch.setattr(autoscaling.httpx, "get", client.get)
    values = autoscaling.series("tok", "proj", "run.googleapis.com/container/instance_count", "loist-staging",
                                1_700_000_000, 1_700_000_180, "ALIGN_MAX", "REDUCE_SUM")
    assert values == [3.0, 5.0, 1.5]
    (request,) = seen
    assert request.url.path == "/v3/projects/proj/timeSeries"
    assert 'resource.labels.service_name = "loist-staging"' in request.url.params["filter"]
    assert request.url.params["interval.startTime"] == "2023-11-14T22:13:20Z"
    assert request.headers["authorization"] == "Bearer tok"
