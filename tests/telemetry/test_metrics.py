"""The metric families in one process: the HTTP middleware's labels, blob-store operations, pool
gauges, MCP outcomes, and that nothing of it is loaded (or costs) before it is turned on."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from mcp_types import CallToolResult, TextContent
from prometheus_client import REGISTRY
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from loist.catalog.engine import build_engine
from loist.errors import NotFound
from loist.mcp import observe as mcp_observe
from loist.mcp.results import failure, ok
from loist.storage.local import LocalBlobStore
from loist.telemetry import metrics
from loist.web.observe import Observe


@pytest.fixture(autouse=True)
def enabled() -> Iterator[None]:
    metrics.enable()  # process-wide and idempotent: tests compare counts before and after
    yield


class Small(BaseModel):
    x: int


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Refuse:
    """A middleware that answers 429 before any route runs (as a rate limiter would)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/limited/"):
            await PlainTextResponse("slow down", status_code=429)(scope, receive, send)
            return
        await self.app(scope, receive, send)


async def _item(request: Request) -> Response:
    if request.path_params["item_id"] == "boom":
        raise RuntimeError("boom")
    return PlainTextResponse("ok")


def _app() -> Starlette:
    routes = [
        Route("/items/{item_id}", _item, methods=["GET"]),
        Route("/limited/{item_id}", _item, methods=["GET"]),
        Mount("/files", app=PlainTextResponse("file")),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Observe, routes=routes), Middleware(Refuse)])


async def test_requests_are_labelled_by_route_template_never_by_path() -> None:
    http = "loist_http_requests_total"
    before = {
        "item": sample(http, route="/items/{item_id}", method="GET", status="200"),
        "missing": sample(http, route="unmatched", method="GET", status="404"),
        "limited": sample(http, route="/limited/{item_id}", method="GET", status="429"),
        "crash": sample(http, route="/items/{item_id}", method="GET", status="500"),
        "odd": sample(http, route="/items/{item_id}", method="other", status="405"),
        "mount": sample(http, route="/files/{path}", method="GET", status="200"),
    }
    transport = httpx.ASGITransport(app=_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ids = [str(uuid.uuid4()) for _ in range(3)]
        for item in ids:
            assert (await client.get(f"/items/{item}")).status_code == 200
        for n in range(2):
            assert (await client.get(f"/random/{uuid.uuid4()}/{n}")).status_code == 404
        assert (await client.get(f"/limited/{ids[0]}")).status_code == 429
        assert (await client.get("/items/boom")).status_code == 500
        assert (await client.request("FROB", f"/items/{ids[1]}")).status_code == 405
        assert (await client.get("/files/a/b.txt")).status_code == 200
    assert sample(http, route="/items/{item_id}", method="GET", status="200") - before["item"] == 3
    assert sample(http, route="unmatched", method="GET", status="404") - before["missing"] == 2
    assert sample(http, route="/limited/{item_id}", method="GET", status="429") - before["limited"] == 1
    assert sample(http, route="/items/{item_id}", method="GET", status="500") - before["crash"] == 1
    assert sample(http, route="/items/{item_id}", method="other", status="405") - before["odd"] == 1
    assert sample(http, route="/files/{path}", method="GET", status="200") - before["mount"] == 1
    labels = {value for metric in REGISTRY.collect() for s in metric.samples for value in s.labels.values()}
    assert not any(item in value for item in ids for value in labels)


def test_storage_operations_are_counted_once_with_their_outcome(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    source = tmp_path / "in.bin"
    source.write_bytes(b"x" * 1000)
    ops = "loist_storage_operations_total"
    before = {op: sample(ops, backend="local", op=op, outcome="ok") for op in ("put_file", "stat", "iter_range")}
    missing = sample(ops, backend="local", op="stat", outcome="NOT_FOUND")
    store.put_file("audio/ab/k.bin", source, None)  # reads its own stat back: part of the put
    assert b"".join(store.iter_range("audio/ab/k.bin")) == b"x" * 1000
    with pytest.raises(NotFound):
        store.stat("audio/ab/nothing.bin")
    assert sample(ops, backend="local", op="put_file", outcome="ok") - before["put_file"] == 1
    assert sample(ops, backend="local", op="stat", outcome="ok") - before["stat"] == 0
    assert sample(ops, backend="local", op="iter_range", outcome="ok") - before["iter_range"] == 1
    assert sample(ops, backend="local", op="stat", outcome="NOT_FOUND") - missing == 1


async def test_pool_gauges_are_read_at_each_scrape(tmp_path: Path) -> None:
    engine = build_engine(f"sqlite:///{tmp_path / 'pool.db'}", pool_size=3)
    try:
        base_out = sample("loist_db_pool_connections", state="checked_out")
        async with engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
            assert sample("loist_db_pool_connections", state="checked_out") - base_out == 1
        await conn.close()
        assert sample("loist_db_pool_connections", state="checked_out") == base_out
        assert sample("loist_db_pool_size") >= 3
    finally:
        await engine.dispose()


def test_mcp_outcome_is_ok_or_the_stable_code() -> None:
    assert mcp_observe.outcome(ok(Small(x=1))) == "ok"
    assert mcp_observe.outcome(failure("NOT_FOUND", "no such track")) == "NOT_FOUND"
    odd = CallToolResult(content=[TextContent(type="text", text="x")], is_error=True)
    assert mcp_observe.outcome(odd) == "INTERNAL"
    before = sample("loist_mcp_tool_calls_total", tool="unknown", outcome="INVALID_ARGUMENT")
    mcp_observe.record(frozenset({"search_library"}), "made_up_" + uuid.uuid4().hex, failure("INVALID_ARGUMENT", "?"), 0.01)
    assert sample("loist_mcp_tool_calls_total", tool="unknown", outcome="INVALID_ARGUMENT") - before == 1


def test_the_cli_loads_neither_prometheus_nor_the_otel_sdk() -> None:
    code = (
        "import sys, loist.cli, loist.library.service, loist.web.app\n"
        "loaded = [m for m in ('prometheus_client', 'opentelemetry.sdk') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_not_found_is_a_stable_outcome() -> None:
    assert metrics.outcome_of(NotFound("x")) == "NOT_FOUND"
    assert metrics.outcome_of(ValueError("x")) == "INTERNAL"
    assert metrics.outcome_of(None) == "ok"
