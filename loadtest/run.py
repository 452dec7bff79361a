"""``scripts/loadtest``: run a locust profile headless against a Loist server and judge it.

    scripts/loadtest --host URL [--users N] [--spawn-rate R] [--duration 60s] [--profile mixed]
                     [--report DIR] [--thresholds FILE] [--think-time MIN,MAX]
    scripts/loadtest --evaluate DIR [--profile mixed] [--thresholds FILE]   # judge an earlier report

1. Asks the server for the tracks to use (MCP ``list_library``, up to 100; the bearer token from
   ``LOADTEST_BEARER_TOKEN``, else ``BEARER_TOKEN``); an empty library is an error (seed it first).
2. For the assistant's ingests: ``LOADTEST_AUDIO_URL`` if set; else, when the host is on loopback,
   a WAV served from a loopback fixture server started here (the server must allow private URLs,
   ``ALLOW_PRIVATE_URLS=true``); else no ingests.
3. Runs locust headless (``loadtest/locustfile.py``), writing ``DIR/locust_stats.csv`` (and the
   failures, exceptions and history CSVs) and ``DIR/report.html``.
4. Checks the stats against the profile's thresholds (``loadtest/thresholds.toml``) and that no
   scenario raised (``locust_exceptions.csv``), writes
   ``DIR/verdict.json`` and exits 1 when one is broken (2 for a usage error), 0 otherwise.
"""

from __future__ import annotations

import argparse
import csv
import ipaddress
import json
import os
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

HERE = Path(__file__).resolve().parent
PROFILES = ("assistant", "listener", "mixed")
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "MCP-Protocol-Version": "2025-06-18"}


class UsageError(Exception):
    """A wrong argument or an unusable server: exit 2."""


def token() -> str:
    return os.environ.get("LOADTEST_BEARER_TOKEN") or os.environ.get("BEARER_TOKEN") or ""


def find_tracks(host: str, bearer: str) -> list[dict[str, Any]]:
    """Up to 100 tracks of the server (id, whether it has artwork), through MCP ``list_library``."""
    headers = dict(MCP_HEADERS)
    if bearer:
        headers["Authorization"] = f"Bearer {bearer}"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "list_library", "arguments": {"limit": 100}}}
    try:
        response = httpx.post(host.rstrip("/") + "/mcp", json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach {host}: {exc}") from None
    if response.status_code != 200:
        raise UsageError(f"{host}/mcp answered {response.status_code} (is LOADTEST_BEARER_TOKEN set?)")
    payload = next((line[5:] for line in response.text.split("\n") if line.startswith("data:")), response.text)
    result = json.loads(payload).get("result", {})
    items = (result.get("structuredContent") or {}).get("items", [])
    tracks = [{"id": item["track"]["id"], "artwork": bool((item["track"].get("artwork") or {}).get("present"))}
              for item in items]
    if not tracks:
        raise UsageError(f"the library at {host} is empty: seed it first (loist seed --synthetic 1000)")
    return tracks


def is_loopback(host: str) -> bool:
    name = urlsplit(host).hostname or ""
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return name == "localhost"


def serve_fixture_audio() -> tuple[ThreadingHTTPServer, str]:
    """A loopback server answering ``/loadtest.wav`` with a short WAV (the assistant's ingests)."""
    from loist.library.synthetic import wav_bytes

    audio = wav_bytes(2.0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(audio)))
            self.end_headers()
            self.wfile.write(audio)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True, name="loadtest-fixture").start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/loadtest.wav"


def run_locust(args: argparse.Namespace, env: dict[str, str]) -> int:
    command = [
        sys.executable, "-m", "locust", "-f", str(HERE / "locustfile.py"), "--headless", "--only-summary",
        "--host", args.host, "--users", str(args.users), "--spawn-rate", str(args.spawn_rate),
        "--run-time", args.duration, "--stop-timeout", "5", "--exit-code-on-error", "0",
        "--csv", str(args.report / "locust"), "--html", str(args.report / "report.html"), "--loglevel", "WARNING",
    ]
    return subprocess.run(command, env=env, check=False).returncode  # noqa: S603 - our own command line


def load_thresholds(path: Path, profile: str) -> dict[str, Any]:
    try:
        table = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read thresholds {path}: {exc}") from None
    if profile not in table:
        raise UsageError(f"{path} has no [{profile}] table")
    return table[profile]


def read_stats(report: Path) -> dict[str, dict[str, str]]:
    path = report / "locust_stats.csv"
    try:
        with path.open(newline="") as handle:
            return {row["Name"]: row for row in csv.DictReader(handle)}
    except OSError as exc:
        raise UsageError(f"no locust statistics at {path}: {exc}") from None


def judge(stats: dict[str, dict[str, str]], limits: dict[str, Any]) -> list[str]:
    """Every threshold broken, in words; empty when the run passes."""
    broken: list[str] = []
    total = stats.get("Aggregated")
    if total is None or int(total["Request Count"]) == 0:
        return ["no request was made"]
    requests, failures = int(total["Request Count"]), int(total["Failure Count"])
    ratio = failures / requests
    if ratio > float(limits.get("max_error_ratio", 0)):
        broken.append(f"error ratio {ratio:.4f} ({failures}/{requests}) > {limits.get('max_error_ratio', 0)}")
    for name, limit_ms in limits.get("p95_ms", {}).items():
        row = stats.get(name)
        if row is None or int(row["Request Count"]) == 0:
            if limits.get("require_all", True):
                broken.append(f"{name}: no requests (a threshold names it)")
            continue
        p95 = float(row["95%"])
        if p95 > float(limit_ms):
            broken.append(f"{name}: p95 {p95:g} ms > {limit_ms} ms")
    return broken


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/loadtest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="base URL of the server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--users", type=int, default=20, help="concurrent simulated users (default 20)")
    parser.add_argument("--spawn-rate", type=float, default=5, help="users started per second (default 5)")
    parser.add_argument("--duration", default="60s", help="run time, locust syntax: 30s, 5m, 1h (default 60s)")
    parser.add_argument("--profile", choices=PROFILES, default="mixed", help="which users (default mixed)")
    parser.add_argument("--think-time", metavar="MIN,MAX",
                        help="seconds each user pauses between requests (default: the profile's, 0.5-3 s)")
    parser.add_argument("--report", type=Path, default=Path("loadtest-report"), help="report directory")
    parser.add_argument("--thresholds", type=Path, default=HERE / "thresholds.toml", help="thresholds file")
    parser.add_argument("--evaluate", type=Path, metavar="DIR", help="only judge the report already in DIR")
    args = parser.parse_args(argv)
    if args.evaluate is None and not args.host:
        parser.error("--host is required (or --evaluate DIR)")
    if args.users < 1 or args.spawn_rate <= 0:
        parser.error("--users must be at least 1 and --spawn-rate positive")
    if args.think_time is not None:
        try:
            low, high = (float(part) for part in args.think_time.split(","))
        except ValueError:
            parser.error("--think-time is MIN,MAX in seconds, e.g. 0.5,2")
        if not 0 <= low <= high:
            parser.error("--think-time needs 0 <= MIN <= MAX")
    return args


def task_errors(report: Path) -> list[str]:
    """Exceptions raised inside the scenarios (a broken scenario, not a slow server): each breaks the run."""
    path = report / "locust_exceptions.csv"
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return [f"scenario error ({row['Count']}x): {row['Message']}" for row in csv.DictReader(handle)]


def verdict(report: Path, profile: str, thresholds: Path) -> int:
    limits = load_thresholds(thresholds, profile)
    broken = judge(read_stats(report), limits) + task_errors(report)
    (report / "verdict.json").write_text(json.dumps({"profile": profile, "thresholds": str(thresholds),
                                                     "passed": not broken, "broken": broken}, indent=2))
    for line in broken:
        print(f"loadtest: threshold broken: {line}", file=sys.stderr)
    print(f"loadtest: {'FAILED' if broken else 'passed'} ({profile}); report in {report}", file=sys.stderr)
    return 1 if broken else 0


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        if args.evaluate is not None:
            return verdict(args.evaluate, args.profile, args.thresholds)
        load_thresholds(args.thresholds, args.profile)  # a bad file fails before the run, not after
        args.report.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "LOADTEST_PROFILE": args.profile, "LOADTEST_BEARER_TOKEN": token(),
               "LOADTEST_TRACKS": json.dumps(find_tracks(args.host, token()))}
        if args.think_time:
            env["LOADTEST_THINK_TIME"] = args.think_time
        fixture = None
        if not env.get("LOADTEST_AUDIO_URL") and is_loopback(args.host) and args.profile != "listener":
            fixture, env["LOADTEST_AUDIO_URL"] = serve_fixture_audio()
        try:
            code = run_locust(args, env)
        finally:
            if fixture is not None:
                fixture.shutdown()
        if code != 0:
            print(f"loadtest: locust exited with {code}", file=sys.stderr)
            return 2
        return verdict(args.report, args.profile, args.thresholds)
    except UsageError as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
