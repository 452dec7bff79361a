"""How /mcp answers: plain JSON unless the message may need a stream (progress, logs, a long tool)."""

from __future__ import annotations

import json

import httpx
import pytest

from loist.web.mcp_route import wants_stream

pytestmark = pytest.mark.asyncio(loop_scope="module")

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
           "MCP-Protocol-Version": "2025-06-18"}


def search(meta: dict[str, object] | None = None) -> dict[str, object]:
    params: dict[str, object] = {"name": "search_library", "arguments": {"query": ""}}
    if meta is not None:
        params["_meta"] = meta
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}


async def test_only_messages_that_may_need_a_stream_get_one() -> None:
    assert not wants_stream(json.dumps(search()).encode())
    assert wants_stream(json.dumps(search({"progressToken": "p"})).encode())
    assert wants_stream(json.dumps(search({"io.modelcontextprotocol/logLevel": "info"})).encode())
    ingest = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
              "params": {"name": "process_audio_complete", "arguments": {}}}
    assert wants_stream(json.dumps(ingest).encode())
    assert wants_stream(json.dumps({**ingest, "params": {"name": "ingest_folder"}}).encode())


async def test_a_search_is_answered_as_plain_json(client: httpx.AsyncClient) -> None:
    r = await client.post("/mcp", json=search(), headers=HEADERS)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    result = r.json()["result"]
    assert r.json()["id"] == 7 and not result["isError"]
    assert result["structuredContent"]["total"] >= 1
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]


async def test_a_call_asking_for_progress_is_answered_as_server_sent_events(client: httpx.AsyncClient) -> None:
    r = await client.post("/mcp", json=search({"progressToken": "p1"}), headers=HEADERS)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    [data] = [line[len("data: "):] for line in r.text.splitlines() if line.startswith("data: ")]
    message = json.loads(data)
    assert message["id"] == 7 and message["result"]["structuredContent"]["total"] >= 1
