"""Abuse limits of the web app (loist.web.ratelimit, loist.web.mcp_limits), in process.

Clients are told apart as the server tells them apart: by the TCP peer address that
``httpx.ASGITransport(client=...)`` hands the app, or by ``X-Forwarded-For`` behind a trusted
proxy. Limits are counted in this process (Redis sharing is tests/e2e/test_abuse.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from loist.config import Settings
from loist.errors import ConfigInvalid
from loist.web.app import create_app
from loist.web.mcp_limits import DownloadSlots, Message
from loist.web.ratelimit import Limiter, address_identity, client_address, token_identity
from tests.web.conftest import BASE_URL, make_settings, running

TOKEN = "rate-limit-token-" + "k" * 32
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
ATTACKER = ("203.0.113.7", 40000)
FRIEND = ("198.51.100.9", 40001)


@asynccontextmanager
async def clients(settings: Settings, *peers: tuple[str, int]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One client per peer address, all talking to one app (one limiter) with its lifespan running."""
    async with running(create_app(settings)) as app:
        made = [httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=peer), base_url=BASE_URL)
                for peer in peers]
        try:
            yield made
        finally:
            for c in made:
                await c.aclose()


def rpc(method: str, params: dict[str, Any] | None = None, id_: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}}


def tool_call(name: str, arguments: dict[str, Any], id_: int = 1) -> dict[str, Any]:
    return rpc("tools/call", {"name": name, "arguments": arguments}, id_)


def sse_json(response: httpx.Response) -> dict[str, Any]:
    """The JSON-RPC message of an MCP answer (an SSE event, or plain JSON)."""
    import json

    if response.headers["content-type"].startswith("application/json"):
        return response.json()
    data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])


# --- who is a client --------------------------------------------------------------------------------


def scope(peer: str, *xff: str) -> dict[str, Any]:
    return {"type": "http", "client": (peer, 1), "headers": [(b"x-forwarded-for", v.encode()) for v in xff]}


@pytest.mark.parametrize(
    ("trusted", "xff", "expected"),
    [
        (0, ["6.6.6.6"], "10.0.0.1"),  # no trusted proxy: the header is the client's own words
        (1, [], "10.0.0.1"),
        (1, ["6.6.6.6, 203.0.113.7"], "203.0.113.7"),  # the proxy appended the last entry
        (1, ["6.6.6.6", "203.0.113.7"], "203.0.113.7"),  # two header lines read as one list
        (2, ["6.6.6.6, 203.0.113.7, 35.191.0.1"], "203.0.113.7"),  # load balancer + Cloud Run
        (2, ["203.0.113.7"], "203.0.113.7"),  # fewer entries than proxies: all were appended by them
    ],
)
def test_client_address_takes_xff_only_from_trusted_proxies(trusted: int, xff: list[str], expected: str) -> None:
    assert client_address(scope("10.0.0.1", *xff), trusted) == expected


def test_identities_never_hold_the_token_and_group_ipv6_by_64() -> None:
    identity = token_identity(TOKEN)
    assert TOKEN not in identity and identity == "token:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:32]
    assert address_identity("2001:db8:1:2:aaaa::1") == address_identity("2001:db8:1:2:bbbb::9") == "ip:2001:db8:1:2::/64"
    assert address_identity("2001:db8:1:3::1") != address_identity("2001:db8:1:2::1")
    assert address_identity("::ffff:203.0.113.7") == address_identity("203.0.113.7") == "ip:203.0.113.7"


# --- settings ---------------------------------------------------------------------------------------


def test_limits_are_validated_and_production_refuses_them_off(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a rate"):
        make_settings(tmp_path, rate_limit_mcp="lots")
    prod = dict(environment="production", auth_enabled=True, bearer_token="p" * 40, storage_backend="gcs",
                gcs_bucket_name="b", database_url="postgresql://u@h/db", embed_base_url="https://m.example")
    assert make_settings(tmp_path, **prod).problems() == []
    with pytest.raises(ConfigInvalid, match="RATE_LIMITS_ENABLED"):
        make_settings(tmp_path, **prod, rate_limits_enabled=False).check()
    assert "REDIS_URL" in " ".join(make_settings(tmp_path, redis_url="http://x").problems())


# --- failed authentication --------------------------------------------------------------------------


async def test_a_wrong_token_burst_is_throttled_while_the_right_token_works_elsewhere(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_enabled=True, bearer_token=TOKEN, rate_limit_auth_failures="5/minute")
    init = rpc("initialize", {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}})
    async with clients(settings, ATTACKER, FRIEND) as (attacker, friend):
        statuses = []
        for n in range(12):
            r = await attacker.post("/mcp", json=init, headers={**MCP_HEADERS, "Authorization": f"Bearer guess-{n}"})
            statuses.append(r.status_code)
        assert statuses == [401] * 5 + [429] * 7
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.json()["error"]["code"] == "RATE_LIMITED"
        # Even the right token is refused from the throttled address: guessing has stopped.
        r = await attacker.post("/mcp", json=init, headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 429
        # Another client with the right token is served, and public pages stay open to both.
        r = await friend.post("/mcp", json=init, headers={**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 200 and sse_json(r)["result"]["serverInfo"]
        assert (await attacker.get("/health/live")).status_code == 200


# --- MCP messages and writes ------------------------------------------------------------------------


async def test_an_ingest_flood_is_rate_limited_as_a_tool_error_while_another_client_is_served(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_ingest="3/minute")
    bad = tool_call("delete_audio", {"audioId": "00000000-0000-4000-8000-000000000000"})
    async with clients(settings, ATTACKER, FRIEND) as (attacker, friend):
        codes = []
        for _ in range(5):
            r = await attacker.post("/mcp", json=bad, headers=MCP_HEADERS)
            assert r.status_code == 200
            result = sse_json(r)["result"]
            assert result["isError"] is True
            codes.append(result["structuredContent"]["error"]["code"])
        assert codes == ["NOT_FOUND"] * 3 + ["RATE_LIMITED"] * 2
        error = result["structuredContent"]["error"]
        assert 1 <= error["details"]["retry_after_s"] <= 60 and r.headers["retry-after"] == str(error["details"]["retry_after_s"])
        assert result["content"][0]["text"].startswith("RATE_LIMITED: ")
        # Reads are not writes: the flooder may still look things up.
        r = await attacker.post("/mcp", json=tool_call("search_library", {"query": "x"}), headers=MCP_HEADERS)
        assert sse_json(r)["result"].get("isError") is not True
        r = await friend.post("/mcp", json=bad, headers=MCP_HEADERS)
        assert sse_json(r)["result"]["structuredContent"]["error"]["code"] == "NOT_FOUND"


async def test_mcp_message_limit_answers_429_for_non_tool_requests(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_mcp="2/minute")
    async with clients(settings, ATTACKER) as (attacker,):
        for _ in range(2):
            assert (await attacker.post("/mcp", json=rpc("tools/list"), headers=MCP_HEADERS)).status_code == 200
        r = await attacker.post("/mcp", json=rpc("tools/list", id_=7), headers=MCP_HEADERS)
        assert r.status_code == 429 and r.headers["retry-after"]
        body = r.json()
        assert body["id"] == 7 and body["error"]["data"]["error"]["code"] == "RATE_LIMITED"


async def test_authenticated_clients_are_counted_by_token_not_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, auth_enabled=True, bearer_token=TOKEN, rate_limit_mcp="2/minute",
                             trusted_proxy_count=1)
    headers = {**MCP_HEADERS, "Authorization": f"Bearer {TOKEN}"}
    async with clients(settings, ATTACKER) as (c,):
        for n in range(2):  # a new address each time: still the same token
            r = await c.post("/mcp", json=rpc("tools/list"), headers={**headers, "X-Forwarded-For": f"192.0.2.{n}"})
            assert r.status_code == 200
        r = await c.post("/mcp", json=rpc("tools/list"), headers={**headers, "X-Forwarded-For": "192.0.2.99"})
        assert r.status_code == 429


def test_download_slots_per_client_and_per_instance() -> None:
    slots = DownloadSlots(total=3, per_client=2)
    with slots.take("a") as first, slots.take("a") as second, slots.take("a") as third:
        assert first is None and second is None
        assert third is not None and "INGEST_MAX_DOWNLOADS_PER_CLIENT" in third.reason
        with slots.take("b") as b1, slots.take("c") as c1:
            assert b1 is None
            assert c1 is not None and "INGEST_MAX_DOWNLOADS" in c1.reason
    assert not slots.running  # every slot came back
    assert Message.parse(b'{"method":"tools/call","id":3,"params":{"name":"process_audio_complete",'
                         b'"arguments":{"source":{"type":"http_url","url":"x"}}}}').downloads
    assert Message.parse(b"[1, 2]") == Message() == Message.parse(b"not json")


# --- public routes ----------------------------------------------------------------------------------


async def test_public_routes_have_their_own_limit_per_client(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limit_public="3/minute")
    async with clients(settings, ATTACKER, FRIEND) as (attacker, friend):
        assert [(await attacker.get("/health/live")).status_code for _ in range(4)] == [200, 200, 200, 429]
        r = await attacker.get("/embed/00000000-0000-4000-8000-000000000000")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert (await friend.get("/health/live")).status_code == 200
        # /mcp is counted by its own limits, not this one.
        assert (await attacker.post("/mcp", json=rpc("tools/list"), headers=MCP_HEADERS)).status_code == 200


async def test_limits_off_counts_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, rate_limits_enabled=False, rate_limit_public="1/minute")
    async with clients(settings, ATTACKER) as (c,):
        assert {(await c.get("/health/live")).status_code for _ in range(3)} == {200}


async def test_an_unreachable_redis_falls_back_to_counting_in_this_instance(tmp_path: Path) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    settings = make_settings(tmp_path, redis_url="redis://127.0.0.1:9/0", rate_limit_public="2/minute")
    limiter = Limiter(settings)
    try:
        assert limiter.where == "redis"
        got = [await limiter.hit(*_public("ip:192.0.2.1")) for _ in range(3)]
        assert got[:2] == [None, None] and got[2] is not None
    finally:
        await limiter.aclose()


def _public(client: str) -> tuple[Any, str]:
    from loist.web.ratelimit import Kind

    return Kind.PUBLIC, client
