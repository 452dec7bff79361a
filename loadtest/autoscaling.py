"""Autoscaling validation against a deployment (``scripts/validate-autoscaling``; docs/capacity.md).

A ramp of load-test steps (``--ramp 10,40,80`` users, ``--step 180s`` each, the mixed profile),
then, for each step's time window, what Cloud Run reports through the Cloud Monitoring API:

- ``run.googleapis.com/container/instance_count`` (summed over revisions and states, the window's
  maximum): how many instances Cloud Run started;
- ``run.googleapis.com/request_latencies`` (the window's 95th percentile): the latency it held;

next to what the capacity model predicts for the request rate locust achieved:
``ceil(rate / per-instance rate)``, clamped to the stack's min/max instances. A step passes when
the observed instance count is within one of the model and the load test passed its thresholds.
Writes ``DIR/autoscaling.json`` and prints a Markdown table; exits 1 when a step is off the model.

The access token comes from ``gcloud auth print-access-token`` (``LOADTEST_ACCESS_TOKEN`` overrides
it); Monitoring data lags a minute or two, so the read is retried until every window has points.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "deploy" / "infra"))
from loist_infra.envspec import SIZING  # noqa: E402

MONITORING = "https://monitoring.googleapis.com/v3/projects/{project}/timeSeries"
#: Mixed-profile requests/s one instance serves within the thresholds (docs/capacity.md, "The model").
PER_INSTANCE_RPS = {"staging": 80.0, "production": 160.0}


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def series(token: str, project: str, metric: str, service: str, start: float, end: float,
           aligner: str, reducer: str) -> list[float]:
    params = {
        "filter": f'metric.type = "{metric}" AND resource.labels.service_name = "{service}"',
        "interval.startTime": rfc3339(start), "interval.endTime": rfc3339(end),
        "aggregation.alignmentPeriod": "60s", "aggregation.perSeriesAligner": aligner,
        "aggregation.crossSeriesReducer": reducer,
    }
    response = httpx.get(MONITORING.format(project=project), params=params,
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
    response.raise_for_status()
    values: list[float] = []
    for one in response.json().get("timeSeries", []):
        for point in one.get("points", []):
            value = point["value"]
            values.append(float(value.get("doubleValue", value.get("int64Value", 0))))
    return values


def observe(token: str, args: argparse.Namespace, start: float, end: float) -> dict[str, float | None]:
    instances = series(token, args.project, "run.googleapis.com/container/instance_count", args.service,
                       start, end, "ALIGN_MAX", "REDUCE_SUM")
    latency = series(token, args.project, "run.googleapis.com/request_latencies", args.service,
                     start, end, "ALIGN_PERCENTILE_95", "REDUCE_MAX")
    return {"instances": max(instances) if instances else None, "p95_ms": max(latency) if latency else None}


def model_instances(rate: float, environment: str) -> int:
    sizing = SIZING[environment]  # type: ignore[index]
    wanted = math.ceil(rate / PER_INSTANCE_RPS[environment]) if rate > 0 else 0
    return max(sizing.min_instances, min(sizing.max_instances, max(1, wanted)))


def run_step(args: argparse.Namespace, users: int) -> dict[str, Any]:
    report = args.report / f"users-{users}"
    started = time.time()
    code = subprocess.run(  # noqa: S603 - our own command line
        [sys.executable, str(HERE / "run.py"), "--host", args.host, "--users", str(users),
         "--spawn-rate", str(max(1, users // 10)), "--duration", args.step, "--profile", "mixed",
         "--report", str(report)], check=False).returncode
    ended = time.time()
    stats = (report / "locust_stats.csv").read_text().splitlines() if (report / "locust_stats.csv").exists() else []
    rate = 0.0
    for line in stats[1:]:
        cells = line.split(",")
        if "Aggregated" in cells:
            header = stats[0].split(",")
            rate = float(cells[header.index("Requests/s")])
    return {"users": users, "start": started, "end": ended, "loadtest_passed": code == 0, "rate": rate,
            "model_instances": model_instances(rate, args.environment)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--environment", choices=sorted(PER_INSTANCE_RPS), required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--ramp", default="10,40,80", help="users per step")
    parser.add_argument("--step", default="180s", help="length of each step (locust syntax)")
    parser.add_argument("--report", type=Path, default=Path("autoscaling-report"))
    parser.add_argument("--access-token", default="", help=argparse.SUPPRESS)
    parser.add_argument("--settle-s", type=float, default=600, help="how long to wait for Monitoring data")
    args = parser.parse_args(argv)
    args.report.mkdir(parents=True, exist_ok=True)
    steps = [run_step(args, int(users)) for users in args.ramp.split(",")]
    token = args.access_token or subprocess.run(["gcloud", "auth", "print-access-token"], check=True,  # noqa: S607
                                                capture_output=True, text=True).stdout.strip()
    deadline = time.time() + args.settle_s
    while True:
        for step in steps:
            step.update(observe(token, args, step["start"], step["end"]))
        if all(step["instances"] is not None for step in steps) or time.time() > deadline:
            break
        time.sleep(30)  # Monitoring lags: poll until every window has its points
    failed = 0
    print("| users | achieved req/s | instances (Cloud Run) | instances (model) | p95 (Cloud Run) | load test |")
    print("|---|---|---|---|---|---|")
    for step in steps:
        seen = step["instances"]
        step["on_model"] = seen is not None and abs(seen - step["model_instances"]) <= 1 and step["loadtest_passed"]
        failed += not step["on_model"]
        print(f"| {step['users']} | {step['rate']:.1f} | {seen} | {step['model_instances']} | {step['p95_ms']} ms | "
              f"{'passed' if step['loadtest_passed'] else 'FAILED'} |")
    (args.report / "autoscaling.json").write_text(json.dumps(steps, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
