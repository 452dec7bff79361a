"""The abuse limits of ``/mcp``: messages, writes and downloads per client.

:class:`McpLimits` looks at each JSON-RPC message after the bearer check (so an authenticated
client is its token's identity, :mod:`loist.web.ratelimit`) and before the MCP SDK runs it:

- every message counts against ``RATE_LIMIT_MCP``;
- a call of a write tool (``process_audio_complete``, ``update_metadata``, ``delete_audio``) also
  against ``RATE_LIMIT_INGEST``;
- a ``process_audio_complete`` of a URL takes one of this instance's ``INGEST_MAX_DOWNLOADS`` slots
  and one of the client's ``INGEST_MAX_DOWNLOADS_PER_CLIENT``, held until its response ends.

A refused tool call is answered the way MCP clients read tool failures: a JSON-RPC result with
``isError`` and ``structuredContent.error = {"code": "RATE_LIMITED", "message", "details":
{"retry_after_s"}}`` (the same shape every failed tool has, :func:`loist.mcp.results.failure`),
with a ``Retry-After`` header as well. Any other refused request gets HTTP 429 with a JSON-RPC
error carrying the same error object, and a notification a bare 429.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from loist.config import Settings
from loist.errors import ErrorCode
from loist.mcp.results import failure
from loist.web.ratelimit import Kind, Limiter, Refusal

WRITE_TOOLS = frozenset({"process_audio_complete", "update_metadata", "delete_audio"})
DOWNLOAD_RETRY_S = 5  # a download slot frees when a download ends: nothing tells when, so "soon"
RATE_LIMITED_RPC = -32029  # implementation-defined server error (JSON-RPC reserves -32000..-32099)


@dataclass(frozen=True, slots=True)
class Message:
    """What the limits need of one JSON-RPC message."""

    id: Any = None
    method: str | None = None
    tool: str | None = None
    downloads: bool = False  # a process_audio_complete of an http(s) URL

    @classmethod
    def parse(cls, body: bytes) -> Message:
        try:
            data = json.loads(body)
        except ValueError:
            return cls()
        if not isinstance(data, dict):
            return cls()
        params = data.get("params") if isinstance(data.get("params"), dict) else {}
        tool = params.get("name") if data.get("method") == "tools/call" else None
        tool = tool if isinstance(tool, str) else None
        arguments = params.get("arguments") if isinstance(params.get("arguments"), dict) else {}
        source = arguments.get("source") if isinstance(arguments.get("source"), dict) else {}
        return cls(
            id=data.get("id"),
            method=data.get("method") if isinstance(data.get("method"), str) else None,
            tool=tool,
            downloads=tool == "process_audio_complete" and source.get("type") != "file",
        )


class DownloadSlots:
    """How many URL ingests run at once, in this instance and per client (never queued: refused)."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.running: Counter[str] = Counter()

    @contextmanager
    def take(self, client: str) -> Iterator[Refusal | None]:
        if self.running[client] >= self.per_client:
            yield Refusal(DOWNLOAD_RETRY_S, f"this client already has {self.per_client} downloads running "
                                            "(INGEST_MAX_DOWNLOADS_PER_CLIENT)")
            return
        if sum(self.running.values()) >= self.total:
            yield Refusal(DOWNLOAD_RETRY_S, f"this server already runs {self.total} downloads (INGEST_MAX_DOWNLOADS)")
            return
        self.running[client] += 1
        try:
            yield None
        finally:
            self.running[client] -= 1
            if self.running[client] <= 0:
                del self.running[client]


def refused(message: Message, refusal: Refusal) -> Response:
    headers = {"Retry-After": str(refusal.retry_after_s)}
    details = {"retry_after_s": refusal.retry_after_s}
    if message.id is not None and message.tool is not None:
        result = failure(str(ErrorCode.RATE_LIMITED), refusal.message, details)
        body = {"jsonrpc": "2.0", "id": message.id,
                "result": result.model_dump(mode="json", by_alias=True, exclude_none=True)}
        return JSONResponse(body, headers=headers)
    if message.id is not None:
        error = {"code": str(ErrorCode.RATE_LIMITED), "message": refusal.message, "details": details}
        body = {"jsonrpc": "2.0", "id": message.id,
                "error": {"code": RATE_LIMITED_RPC, "message": f"RATE_LIMITED: {refusal.message}", "data": {"error": error}}}
        return JSONResponse(body, status_code=429, headers=headers)
    return refusal.response()


class McpLimits:
    """The admission of ``/mcp`` messages (see the module docstring); :meth:`admit` is its one door."""

    def __init__(self, limiter: Limiter, settings: Settings) -> None:
        self.limiter = limiter
        self.slots = DownloadSlots(settings.ingest_max_downloads, settings.ingest_max_downloads_per_client)

    @asynccontextmanager
    async def admit(self, scope: Scope, body: bytes) -> AsyncIterator[Response | None]:
        """Yields the refusal to send, or None while the message may run (download slot held)."""
        if not self.limiter.enabled:
            yield None
            return
        message = Message.parse(body)
        client = self.limiter.client_of(scope)
        refusal = await self.limiter.hit(Kind.MCP, client)
        if refusal is None and message.tool in WRITE_TOOLS:
            refusal = await self.limiter.hit(Kind.INGEST, client)
        if refusal is not None:
            yield refused(message, refusal)
            return
        if not message.downloads:
            yield None
            return
        with self.slots.take(client) as busy:
            yield refused(message, busy) if busy is not None else None
