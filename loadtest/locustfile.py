"""Locust scenarios for a Loist deployment (docs/load-testing.md). Run through ``scripts/loadtest``.

Two kinds of user, and the profiles that mix them (``LOADTEST_PROFILE``):

- ``AssistantUser``: an AI assistant over MCP streamable HTTP (stateless JSON-RPC ``POST /mcp``
  with the bearer token): ``initialize`` once, then ``search_library`` 60 %, ``get_audio_metadata``
  20 %, ``list_library`` 10 %, ``get_embed_url`` 5 %, ``process_audio_complete`` 5 % (from
  ``LOADTEST_AUDIO_URL``: a loopback fixture server locally, a reachable URL against staging; the
  task is skipped when there is none).
- ``ListenerUser``: a person who opens a shared link: the embed page, the oEmbed answer an
  unfurler fetches, the stream with the ranges a browser's ``<audio>`` sends (``bytes=0-``, read
  a little and dropped, then a seek ``bytes=N-``), and the thumbnail.
- profiles: ``assistant``, ``listener``, ``mixed`` (3 listeners to 1 assistant).

Requests are named by endpoint (``GET /embed/[id]``, ``MCP search_library``, ...): the names the
thresholds file (``loadtest/thresholds.toml``) gives p95 limits for. A tool result with ``isError``
(``OVERLOADED`` included) and any ``429``/``5xx`` count as failures.

The track ids come from ``LOADTEST_TRACKS`` (JSON, written by ``scripts/loadtest``, which asks the
server once before the run), so listeners need no token.
"""

from __future__ import annotations

import itertools
import json
import os
import random
from typing import Any

from locust import HttpUser, between, events, task

PROFILE = os.environ.get("LOADTEST_PROFILE", "mixed")
TOKEN = os.environ.get("LOADTEST_BEARER_TOKEN", "")
AUDIO_URL = os.environ.get("LOADTEST_AUDIO_URL", "")
TRACKS: list[dict[str, Any]] = json.loads(os.environ.get("LOADTEST_TRACKS", "[]"))
QUERIES = ("love", "night", "heart fire", "summer dream", "blue", "river", "city road", "gold", "moon",
           "star*", "dark light", "ocean", "angel", "highway", "artist:john", "year:1990..1999", "velvet")
THINK = os.environ.get("LOADTEST_THINK_TIME", "")  # "MIN,MAX" seconds between a user's requests
PROTOCOL_VERSION = "2025-06-18"
BROWSER_FIRST_READ = 64 * 1024  # what a player reads of its first `bytes=0-` answer before it seeks

_ids = itertools.count(1)
rng = random.Random()  # noqa: S311 - load-test choices, not security


def track() -> dict[str, Any]:
    return rng.choice(TRACKS)


def think(low: float, high: float) -> Any:
    """The pause between one user's requests: the profile's, unless LOADTEST_THINK_TIME says."""
    if THINK:
        low, high = (float(part) for part in THINK.split(","))
    return between(low, high)


class AssistantUser(HttpUser):
    """An assistant calling tools over MCP streamable HTTP."""

    wait_time = think(0.5, 2)
    weight = 1 if PROFILE != "listener" else 0

    def on_start(self) -> None:
        self.rpc("initialize", {"protocolVersion": PROTOCOL_VERSION, "capabilities": {},
                                "clientInfo": {"name": "loist-loadtest", "version": "1"}}, name="MCP initialize")

    def rpc(self, method: str, params: dict[str, Any], *, name: str) -> None:
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
                   "MCP-Protocol-Version": PROTOCOL_VERSION}
        if TOKEN:
            headers["Authorization"] = f"Bearer {TOKEN}"
        body = {"jsonrpc": "2.0", "id": next(_ids), "method": method, "params": params}
        with self.client.post("/mcp", json=body, headers=headers, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}")
                return
            problem = rpc_problem(response.text)
            if problem:
                response.failure(problem)

    def tool(self, tool: str, arguments: dict[str, Any]) -> None:
        self.rpc("tools/call", {"name": tool, "arguments": arguments}, name=f"MCP {tool}")

    @task(60)
    def search(self) -> None:
        self.tool("search_library", {"query": rng.choice(QUERIES), "limit": 20})

    @task(20)
    def metadata(self) -> None:
        self.tool("get_audio_metadata", {"audioId": track()["id"]})

    @task(10)
    def list_page(self) -> None:
        self.tool("list_library", {"limit": 20})

    @task(5)
    def embed_url(self) -> None:
        self.tool("get_embed_url", {"audioId": track()["id"]})

    @task(5)
    def ingest(self) -> None:
        if AUDIO_URL:
            self.tool("process_audio_complete", {"source": {"type": "http_url", "url": AUDIO_URL}})


def rpc_problem(text: str) -> str:
    """Why a JSON-RPC answer (plain JSON or server-sent events) is a failure; "" when it is not."""
    # Split at "\n" only: str.splitlines() also breaks at U+2028, U+0085 ..., which tags may hold
    # raw inside the JSON (the SDK writes it with ensure_ascii off), and cut the answer in two.
    payload = next((line[5:] for line in text.split("\n") if line.startswith("data:")), text)
    try:
        message = json.loads(payload)
    except ValueError:
        return "not a JSON-RPC answer"
    if "error" in message:
        return f"JSON-RPC error {message['error'].get('code')}"
    result = message.get("result", {})
    if result.get("isError"):
        error = (result.get("structuredContent") or {}).get("error", {})
        return f"isError {error.get('code', '?')}"
    return ""


class ListenerUser(HttpUser):
    """Someone opening a shared player: page, unfurl, stream, artwork."""

    wait_time = think(1, 3)
    weight = 3 if PROFILE == "mixed" else (0 if PROFILE == "assistant" else 1)

    @task(4)
    def embed(self) -> None:
        self.client.get(f"/embed/{track()['id']}", name="GET /embed/[id]")

    @task(3)
    def oembed(self) -> None:
        page = f"{self.host.rstrip('/')}/embed/{track()['id']}"
        self.client.get("/oembed", params={"url": page, "format": "json"}, name="GET /oembed")

    @task(3)
    def listen(self) -> None:
        chosen = track()
        url = f"/audio/{chosen['id']}/stream"
        # The first request of an <audio> element: everything from 0, of which it reads a little.
        with self.client.get(url, headers={"Range": "bytes=0-"}, name="GET /audio/[id]/stream (bytes=0-)",
                             stream=True, catch_response=True) as response:
            if response.status_code not in (200, 206):
                response.failure(f"HTTP {response.status_code}")
                return
            next(response.iter_content(BROWSER_FIRST_READ), b"")
            size = int(response.headers.get("Content-Range", "/0").rsplit("/", 1)[-1] or 0)
            response.close()
        if size > 1:  # then a seek: from some point to the end, again read in part
            start = rng.randrange(size // 2, size)
            with self.client.get(url, headers={"Range": f"bytes={start}-"}, name="GET /audio/[id]/stream (seek)",
                                 stream=True, catch_response=True) as seek:
                if seek.status_code != 206:
                    seek.failure(f"HTTP {seek.status_code}")
                    return
                next(seek.iter_content(BROWSER_FIRST_READ), b"")

    @task(1)
    def thumbnail(self) -> None:
        with_art = [t for t in TRACKS if t.get("artwork")]
        if with_art:
            self.client.get(f"/audio/{rng.choice(with_art)['id']}/thumbnail", name="GET /audio/[id]/thumbnail")


@events.test_start.add_listener
def _check(environment: Any, **_: Any) -> None:
    if not TRACKS:
        raise SystemExit("LOADTEST_TRACKS is empty: run through scripts/loadtest, which finds the tracks first")
