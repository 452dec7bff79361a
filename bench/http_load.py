"""HTTP benchmark (issue #3 item 8): the public web routes next to nginx, in the same run.

1. ``GET /embed/{id}`` and ``GET /oembed?url=...`` on ``loist serve`` (one uvicorn process), next
   to nginx serving the same rendered page / the same oEmbed JSON as static files: throughput and
   latency percentiles at 50 concurrent clients (keep-alive connections).
2. Range streaming over a ~10 MB WAV on ``/audio/{id}/stream``, next to nginx serving the same
   file: random 1 MiB ranges (a player seeking around) and random open-ended ``bytes=N-`` ranges
   (a player streaming from some point to the end): MB/s.

Load comes from ``wrk`` (``apt-get install wrk``) in its own process, with a Lua script that
reports p50/p95/p99 and randomises ranges identically for both servers. nginx runs non-daemon with
a temporary config, one worker (like the one uvicorn process). Everything binds to 127.0.0.1.

    .venv/bin/python bench/http_load.py [--duration 10] [--connections 50] [--threads 1] [--json out.json]

Prints a Markdown table for docs/benchmarks.md. Targets: embed and oEmbed p95 under 20 ms at 50
concurrent clients; streaming at least half of nginx's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
from common import machine

RANGE_CHUNK = 1024 * 1024

LUA = r"""
local chunk = tonumber(os.getenv("BENCH_RANGE_CHUNK") or "0")
local size = tonumber(os.getenv("BENCH_RANGE_SIZE") or "0")
math.randomseed(42)

request = function()
  if chunk > 0 then
    local start = math.random(0, size - chunk)
    wrk.headers["Range"] = "bytes=" .. start .. "-" .. (start + chunk - 1)
  elseif size > 0 then
    -- a player starting (or seeking) somewhere and streaming to the end: bytes=N-
    wrk.headers["Range"] = "bytes=" .. math.random(0, size - 1) .. "-"
  end
  return wrk.format(nil, nil)
end

done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "errors": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, summary.bytes, errors,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    types {{ text/html html; application/json json; audio/wav wav; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


@dataclass
class Result:
    server: str
    route: str
    requests: int
    seconds: float
    rps: float
    mb_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_live(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server for {url} exited with {proc.returncode}")
        try:
            status = httpx.get(url, timeout=1).status_code
            if status == 200:
                return
            raise SystemExit(f"{url} answered {status}")
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} not up after {timeout_s}s")


def make_wav(path: Path, seconds: int) -> Path:
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
         "-metadata", "title=Benchmark Tone", "-metadata", "artist=Loist Bench",
         "-ac", "2", "-ar", "44100", "-c:a", "pcm_s16le", str(path)],
        check=True,
    )
    return path


async def seed(data_dir: Path, audio: Path) -> str:
    from loist.config import Settings
    from loist.library.service import Library

    lib = await Library.open(Settings(_env_file=None, data_dir=data_dir))  # type: ignore[call-arg]
    try:
        return str((await lib.ingest_file(audio)).id)
    finally:
        await lib.close()


def run_wrk(url: str, args: argparse.Namespace, script: Path, env: dict[str, str]) -> dict[str, int]:
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--timeout", "5s",
           "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, **env}).stdout
    line = next(line for line in out.splitlines() if line.startswith("BENCH "))
    return json.loads(line.removeprefix("BENCH "))


def measure(server: str, route: str, url: str, args: argparse.Namespace, script: Path,
            env: dict[str, str] | None = None) -> Result:
    run_wrk(url, argparse.Namespace(**{**vars(args), "duration": 2}), script, env or {})  # warm-up
    raw = run_wrk(url, args, script, env or {})
    seconds = raw["duration_us"] / 1e6
    return Result(
        server=server, route=route, requests=raw["requests"], seconds=round(seconds, 2),
        rps=round(raw["requests"] / seconds, 1), mb_per_s=round(raw["bytes"] / seconds / 1e6, 1),
        p50_ms=round(raw["p50_us"] / 1000, 2), p95_ms=round(raw["p95_us"] / 1000, 2),
        p99_ms=round(raw["p99_us"] / 1000, 2), errors=raw["errors"],
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT if proc.args[0] == sys.executable else signal.SIGQUIT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement (after a 2 s warm-up)")
    parser.add_argument("--connections", type=int, default=50, help="concurrent clients")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (leave the other core to the server)")
    parser.add_argument("--audio-seconds", type=int, default=60, help="length of the WAV streamed (~176 KB/s)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    for tool in ("wrk", "nginx", "ffmpeg"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is required (apt-get install {tool})")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"

    tmp = Path(tempfile.mkdtemp(prefix="loist-bench-http-"))
    tmp.chmod(0o755)  # nginx workers run as an unprivileged user and must read the static root
    procs: list[subprocess.Popen[bytes]] = []
    try:
        audio = make_wav(tmp / "bench.wav", args.audio_seconds)
        data_dir = tmp / "data"
        track_id = asyncio.run(seed(data_dir, audio))

        loist_port, nginx_port = free_port(), free_port()
        loist = f"http://127.0.0.1:{loist_port}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("LOIST_", "DATABASE_", "DB_", "GCS_", "STORAGE_", "AUTH_", "EMBED_"))}
        env.update(LOIST_DATA_DIR=str(data_dir), EMBED_BASE_URL=loist, LOG_LEVEL="WARNING")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "loist", "serve", "--transport", "http", "--host", "127.0.0.1",
             "--port", str(loist_port)], cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_live(f"{loist}/health/live", procs[-1])

        embed_path = f"/embed/{track_id}"
        oembed_path = f"/oembed?url={quote(loist + embed_path, safe='')}"
        stream_path = f"/audio/{track_id}/stream"
        root = tmp / "www"
        root.mkdir()
        (root / "embed.html").write_bytes(httpx.get(loist + embed_path).content)
        (root / "oembed.json").write_bytes(httpx.get(loist + oembed_path).content)
        shutil.copyfile(audio, root / "audio.wav")
        size = audio.stat().st_size

        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port, root=root))
        procs.append(subprocess.Popen([nginx_bin, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-start.log")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        nginx = f"http://127.0.0.1:{nginx_port}"
        wait_live(f"{nginx}/embed.html", procs[-1])

        script = tmp / "bench.lua"
        script.write_text(LUA)
        ranged = {"BENCH_RANGE_CHUNK": str(RANGE_CHUNK), "BENCH_RANGE_SIZE": str(size)}
        open_ended = {"BENCH_RANGE_CHUNK": "0", "BENCH_RANGE_SIZE": str(size)}
        results = [
            measure("loist", "GET /embed/{id}", loist + embed_path, args, script),
            measure("nginx", "static embed.html", f"{nginx}/embed.html", args, script),
            measure("loist", "GET /oembed", loist + oembed_path, args, script),
            measure("nginx", "static oembed.json", f"{nginx}/oembed.json", args, script),
            measure("loist", "GET /audio/{id}/stream, 1 MiB ranges", loist + stream_path, args, script, ranged),
            measure("nginx", "static audio.wav, 1 MiB ranges", f"{nginx}/audio.wav", args, script, ranged),
            measure("loist", "GET /audio/{id}/stream, bytes=N- ranges", loist + stream_path, args, script, open_ended),
            measure("nginx", "static audio.wav, bytes=N- ranges", f"{nginx}/audio.wav", args, script, open_ended),
        ]
    finally:
        for proc in reversed(procs):
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nMachine: {machine()}")
    print(f"Command: .venv/bin/python bench/http_load.py --duration {args.duration} --connections {args.connections} "
          f"--threads {args.threads}  (wrk, keep-alive, {args.connections} connections; WAV {size / 1e6:.1f} MB)\n")
    print("| server | route | req/s | MB/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r.server} | {r.route} | {r.rps:,.0f} | {r.mb_per_s:,.1f} | {r.p50_ms} | {r.p95_ms} | {r.p99_ms} | {r.errors} |")
    embed_p95, oembed_p95 = results[0].p95_ms, results[2].p95_ms
    print(f"\nembed p95 {embed_p95} ms, oEmbed p95 {oembed_p95} ms (target < 20 ms): "
          f"{'PASS' if max(embed_p95, oembed_p95) < 20 else 'FAIL'}")
    for ours, theirs in ((results[4], results[5]), (results[6], results[7])):
        ratio = ours.mb_per_s / theirs.mb_per_s if theirs.mb_per_s else 0.0
        print(f"{ours.route}: {ratio:.2f}x nginx (target >= 0.5x): {'PASS' if ratio >= 0.5 else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "results": [asdict(r) for r in results]}, indent=2))


if __name__ == "__main__":
    main()
