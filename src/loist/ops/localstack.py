"""The local stack without Docker: PostgreSQL + a GCS emulator + ``loist serve``, one command.

``scripts/local-stack`` runs ``python -m loist.ops.localstack``. It is the compose stack
(``compose.yaml``) for machines without a Docker engine, and what the end-to-end tests start:

1. a database: ``--database-url`` as given (nothing created or dropped), or a fresh database on
   ``--pg-server`` (created now, dropped on exit), or else a throwaway cluster made with the local
   PostgreSQL binaries (``initdb`` into a temporary folder, ``pg_ctl start`` on a free port with
   its unix socket in that folder; run as the ``postgres`` user when we are root, because
   ``initdb`` refuses root), removed on exit;
2. gcp-storage-emulator in a subprocess (in memory) with the bucket created;
3. ``loist db upgrade``, then ``loist serve --transport http`` on a free loopback port with
   ``AUTH_ENABLED=true``, a generated ``BEARER_TOKEN`` and ``ALLOW_PRIVATE_URLS=true`` (so the
   server may fetch audio from other loopback servers, which the deployment check relies on);
   Its metrics listener gets a free loopback port (``METRICS_PORT``); with ``--observability`` a
   Prometheus (:mod:`loist.ops.prometheus`) scrapes it;
4. waits for ``/health/ready``, prints the URLs and the token (``--json``: one JSON object on one
   line), writes ``--env-file`` for ``source``, and runs until Ctrl-C / SIGTERM, then stops
   everything it started, in reverse order.

It is tooling at the entry-point layer: it talks to the rest of Loist only through the ``loist``
command line and HTTP, exactly as an operator would.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
DEFAULT_BUCKET = "loist-local"


class StackError(RuntimeError):
    """A component failed to start; the message says which one and why."""


@dataclass
class Stack:
    """What is running, and how to undo it (``cleanups`` run last-in, first-out)."""

    workdir: Path
    base_url: str = ""
    token: str = ""
    database_url: str = ""
    database_mode: str = ""  # "given" | "fresh-database" | "throwaway-cluster"
    emulator_url: str = ""
    bucket: str = DEFAULT_BUCKET
    metrics_port: int = 0
    prometheus_url: str = ""
    server: subprocess.Popen[bytes] | None = None
    cleanups: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The settings a ``loist`` command needs to act on this stack (the server's own)."""
        return {
            "ENVIRONMENT": "local",
            "DATABASE_URL": self.database_url,
            "STORAGE_BACKEND": "gcs",
            "GCS_BUCKET_NAME": self.bucket,
            "GCS_PROJECT_ID": "local",
            "STORAGE_EMULATOR_HOST": self.emulator_url,
            "AUTH_ENABLED": "true",
            "BEARER_TOKEN": self.token,
            "ALLOW_PRIVATE_URLS": "true",
            "EMBED_BASE_URL": self.base_url,
            "LOIST_DATA_DIR": str(self.workdir / "data"),
            "METRICS_PORT": str(self.metrics_port),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "mcp_url": f"{self.base_url}/mcp",
            "ready_url": f"{self.base_url}/health/ready",
            "token": self.token,
            "database_url": self.database_url,
            "database_mode": self.database_mode,
            "emulator_url": self.emulator_url,
            "bucket": self.bucket,
            "metrics_url": f"http://127.0.0.1:{self.metrics_port}/metrics" if self.metrics_port else "",
            "prometheus_url": self.prometheus_url,
            "workdir": str(self.workdir),
            "pid": os.getpid(),
        }

    def stop(self) -> None:
        while self.cleanups:
            name, undo = self.cleanups.pop()
            try:
                undo()
            except Exception as exc:  # noqa: BLE001 - keep stopping the rest; say what is left behind
                _say(f"local-stack: could not stop {name}: {exc}")


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def free_port() -> int:
    """A free loopback TCP port (bound then released: a tiny race, acceptable for a dev stack)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


def _wait_until(what: str, probe: Callable[[], bool], proc: subprocess.Popen[bytes] | None, log: Path | None) -> None:
    """Poll ``probe`` until it is true; fail fast if ``proc`` died, with the tail of its log."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    delay = 0.05
    while True:
        if proc is not None and proc.poll() is not None:
            raise StackError(f"{what} exited with code {proc.returncode}{_tail(log)}")
        if probe():
            return
        if time.monotonic() > deadline:
            raise StackError(f"{what} not ready after {READY_TIMEOUT_S:.0f}s{_tail(log)}")
        time.sleep(delay)  # polling a child process we started; there is no event to wait on
        delay = min(delay * 1.5, 0.5)


def _tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").strip().splitlines()[-lines:]
    return ("; last log lines:\n  " + "\n  ".join(text)) if text else ""


# --- the database -------------------------------------------------------------------------------


def _as_postgres_user(cmd: list[str]) -> list[str]:
    """``initdb``/``pg_ctl`` refuse to run as root: run them as ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise StackError("running as root needs runuser to start PostgreSQL as the postgres user")
    return [runuser, "-u", "postgres", "--", *cmd]


def _pg_binary(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise StackError(f"{name} not found: install PostgreSQL (e.g. apt-get install postgresql) or pass --database-url")


def start_throwaway_cluster(stack: Stack) -> None:
    """``initdb`` a cluster in the work folder and start it on a free port (socket in the folder)."""
    pgdata = stack.workdir / "pgdata"
    socket_dir = stack.workdir / "pgsocket"
    log = stack.workdir / "postgres.log"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise StackError(
                "running as root without a postgres user: initdb refuses root; "
                "pass --pg-server or --database-url"
            ) from None
        os.chown(stack.workdir, pw.pw_uid, pw.pw_gid)
        os.chown(socket_dir, pw.pw_uid, pw.pw_gid)
        log.touch()
        os.chown(log, pw.pw_uid, pw.pw_gid)
    port = free_port()
    init = _as_postgres_user(
        [_pg_binary("initdb"), "-D", str(pgdata), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]
    )
    done = subprocess.run(init, capture_output=True, text=True, check=False)  # noqa: S603 - fixed arguments
    if done.returncode != 0:
        raise StackError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
    options = f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = _as_postgres_user([_pg_binary("pg_ctl"), "-D", str(pgdata), "-l", str(log), "-o", options, "-w", "start"])
    done = subprocess.run(start, capture_output=True, text=True, check=False)  # noqa: S603 - fixed arguments
    if done.returncode != 0:
        raise StackError(f"pg_ctl start failed: {done.stderr.strip() or done.stdout.strip()}{_tail(log)}")

    def stop_cluster() -> None:
        stop = _as_postgres_user([_pg_binary("pg_ctl"), "-D", str(pgdata), "-m", "fast", "-w", "stop"])
        subprocess.run(stop, capture_output=True, check=False)  # noqa: S603 - fixed arguments

    stack.cleanups.append(("the throwaway PostgreSQL cluster", stop_cluster))
    stack.database_url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    stack.database_mode = "throwaway-cluster"


def create_fresh_database(stack: Stack, server_url: str) -> None:
    """Create ``loist_stack_<hex>`` on an existing server (CI's 5432); drop it on exit."""
    import psycopg
    from psycopg import sql

    name = f"loist_stack_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(server_url.rstrip("/"))
    admin = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise StackError(f"cannot create a database on {_masked(server_url)}: {str(exc).strip()}") from None

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    stack.cleanups.append((f"database {name}", drop))
    stack.database_url = urlunsplit(parts._replace(path=f"/{quote(name)}"))
    stack.database_mode = "fresh-database"


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":********@", 1)))
    return url


# --- storage and the server --------------------------------------------------------------------


def start_emulator(stack: Stack) -> None:
    """gcp-storage-emulator in memory on a free port, creating the bucket itself."""
    port = free_port()
    log = stack.workdir / "gcs-emulator.log"
    exe = Path(sys.executable).with_name("gcp-storage-emulator")
    cmd = [str(exe) if exe.exists() else "gcp-storage-emulator", "start", "--host", "127.0.0.1",
           "--port", str(port), "--in-memory", "--default-bucket", stack.bucket, "--quiet"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=stack.workdir)  # noqa: S603
    stack.cleanups.append(("the GCS emulator", lambda: _stop_process(proc)))
    stack.emulator_url = f"http://127.0.0.1:{port}"
    bucket_url = f"{stack.emulator_url}/storage/v1/b/{stack.bucket}"
    _wait_until("the GCS emulator", lambda: _http_get_status(bucket_url) == 200, proc, log)


def _http_get_status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=2.0).status_code
    except httpx.HTTPError:
        return None


def _loist(*args: str) -> list[str]:
    return [sys.executable, "-m", "loist", *args]


def migrate(stack: Stack) -> None:
    env = os.environ | stack.env()
    done = subprocess.run(  # noqa: S603 - our own CLI
        _loist("db", "upgrade"), env=env, cwd=stack.workdir, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise StackError(f"loist db upgrade failed (exit {done.returncode}): {done.stderr.strip()}")


def start_server(stack: Stack, port: int) -> None:
    log = stack.workdir / "loist.log"
    env = os.environ | stack.env() | {"LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING")}
    cmd = _loist("serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port))
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, cwd=stack.workdir, stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    stack.server = proc
    stack.cleanups.append(("loist serve", lambda: _stop_process(proc)))
    _wait_until("loist serve (/health/ready)", lambda: _http_get_status(f"{stack.base_url}/health/ready") == 200,
                proc, log)


def start_prometheus(stack: Stack) -> None:
    """Debian's Prometheus on a free loopback port, scraping the server's metrics listener every 5 s."""
    from loist.ops import prometheus

    try:
        running = prometheus.start(stack.workdir / "prometheus", [f"127.0.0.1:{stack.metrics_port}"], free_port(),
                                   interval_s=5)
    except prometheus.PrometheusError as exc:
        raise StackError(str(exc)) from None
    stack.cleanups.append(("Prometheus", running.stop))
    stack.prometheus_url = running.url


def start(args: argparse.Namespace) -> Stack:
    """Start every component; on any failure stop what was started and raise StackError."""
    workdir = Path(tempfile.mkdtemp(prefix="loist-stack-"))
    stack = Stack(workdir=workdir, bucket=args.bucket)
    if args.keep_workdir:
        stack.cleanups.append(("nothing", lambda: None))
    else:
        stack.cleanups.append(("the work folder", lambda: shutil.rmtree(workdir, ignore_errors=True)))
    try:
        if args.database_url:
            stack.database_url = args.database_url
            stack.database_mode = "given"
        elif args.pg_server:
            create_fresh_database(stack, args.pg_server)
        else:
            start_throwaway_cluster(stack)
        start_emulator(stack)
        port = args.port or free_port()
        stack.base_url = f"http://127.0.0.1:{port}"
        stack.token = args.token or secrets.token_urlsafe(32)
        stack.metrics_port = free_port()
        migrate(stack)
        start_server(stack, port)
        if args.observability:
            start_prometheus(stack)
    except BaseException:
        stack.stop()
        raise
    return stack


def write_env_file(stack: Stack, path: Path) -> None:
    """``KEY='value'`` lines a shell can ``source`` (and ``LOIST_BASE_URL`` for scripts)."""
    values = stack.env() | {"LOIST_BASE_URL": stack.base_url, "LOIST_MCP_URL": f"{stack.base_url}/mcp"}
    text = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in values.items())
    path.write_text(text)
    path.chmod(0o600)  # it holds the bearer token


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="local-stack",
        description="Run Loist against PostgreSQL and a GCS emulator, without Docker. Ctrl-C stops everything.",
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"),
                        help="Use this PostgreSQL database as is (default: $DATABASE_URL).")
    parser.add_argument("--pg-server", default=None,
                        help="Create a fresh database on this server (e.g. postgresql://postgres@127.0.0.1:5432) "
                        "and drop it on exit.")
    parser.add_argument("--port", type=int, default=0, help="Port for loist serve (default: a free one).")
    parser.add_argument("--token", default=os.environ.get("LOCAL_STACK_TOKEN"),
                        help="Bearer token (default: generated).")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help=f"Bucket name (default: {DEFAULT_BUCKET}).")
    parser.add_argument("--env-file", type=Path, default=None, help="Write the stack's settings here, to source.")
    parser.add_argument("--json", action="store_true", help="Print one JSON line when ready.")
    parser.add_argument("--keep-workdir", action="store_true", help="Keep logs and data after exit.")
    parser.add_argument("--observability", action="store_true",
                        help="Also run Prometheus (Debian's prometheus package) scraping the server's metrics.")
    parser.add_argument("--ready-only", action="store_true",
                        help="Exit (stopping everything) as soon as the stack is ready: a self-test.")
    args = parser.parse_args(argv)
    if args.database_url and args.pg_server:
        parser.error("give --database-url or --pg-server, not both")
    return args


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so Ctrl-C and ``kill`` clean up the same way."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with _signals_raise():
        try:
            stack = start(args)
        except StackError as exc:
            _say(f"local-stack: {exc}")
            return 1
        except KeyboardInterrupt:
            _say("local-stack: interrupted while starting; stopped what had started")
            return 130
        try:
            if args.env_file:
                write_env_file(stack, args.env_file)
            if args.json:
                print(json.dumps(stack.describe()), flush=True)
            else:
                info = stack.describe()
                print(
                    f"Loist local stack is ready ({info['database_mode']})\n"
                    f"  base URL   {info['base_url']}\n"
                    f"  MCP        {info['mcp_url']}  (Authorization: Bearer <token>)\n"
                    f"  token      {info['token']}\n"
                    f"  database   {_masked(info['database_url'])}\n"
                    f"  GCS        {info['emulator_url']}  bucket {info['bucket']}\n"
                    f"  metrics    {info['metrics_url']}\n"
                    + (f"  Prometheus {info['prometheus_url']}\n" if info["prometheus_url"] else "")
                    + f"  logs       {info['workdir']}\n"
                    + (f"  env file   {args.env_file}  (source it to run loist commands here)\n" if args.env_file else "")
                    + "Ctrl-C stops everything.",
                    flush=True,
                )
            if not args.ready_only:
                assert stack.server is not None
                code = stack.server.wait()
                _say(f"local-stack: loist serve exited with code {code}{_tail(stack.workdir / 'loist.log')}")
                return 1
            return 0
        except KeyboardInterrupt:
            return 0
        finally:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if args.env_file:
                with contextlib.suppress(OSError):
                    args.env_file.unlink()
            stack.stop()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
