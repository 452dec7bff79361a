"""``/mcp``: the ASGI endpoint in front of the MCP SDK's streamable-HTTP session manager.

What it adds to the SDK (``mcp`` 2.3.0), and why:

- **Stateless means POST only.** The server runs the SDK's stateless mode (any instance answers
  any request). There a ``GET`` would open a server-to-client event stream that nothing ever
  writes to and that never ends, and ``DELETE`` has no session to end, so every method but
  ``POST`` is answered ``405`` with ``Allow: POST`` (what the streamable-HTTP specification allows
  and what the SDK's newer protocol path answers too). The official client opens no ``GET`` stream
  without a session id, so it never notices.
- **A client that leaves is not a server error.** The request body is read here, before the SDK
  sees the request: a client that disconnects mid-body is logged at INFO (the SDK logged it as an
  ERROR with a traceback and tried to answer 500 to nobody). The body is then handed to the SDK
  unchanged. A client that leaves before its response is complete is logged at INFO too.
- **A bounded body.** JSON-RPC messages are a few kilobytes (the largest, ``update_metadata`` with
  every tag at its limit, is under 64 KiB), so a body over ``MAX_BODY_BYTES`` is refused with 413
  ``SIZE_EXCEEDED`` as soon as its ``Content-Length`` or its bytes say so; nothing larger is held in
  memory (the SDK would read any body whole).
- **Plain JSON unless a stream is needed.** Two SDK session managers run side by side
  (:func:`loist.mcp.server.mcp_http_managers`): one answers ``application/json``, the other
  server-sent events. A message goes to the SSE one when its answer may need a stream: it asks for
  progress (``progressToken``) or log messages (``logLevel``), or calls a tool that runs long
  (``process_audio_complete``, ``ingest_folder``: progress, and keep-alive pings behind a proxy).
  Everything else (searches, reads, listings) is answered as plain JSON, which the streamable-HTTP
  specification allows for any request and every MCP client accepts; the server skips a task
  group, a memory stream and the SSE encoding per call. The test is a substring test on the raw
  body, so it can only err towards the stream, which is always correct.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from loist.errors import ErrorCode
from loist.web.errors import error_json

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
# A message whose body holds any of these may need a streamed answer (module docstring).
STREAM_MARKERS = (b"progressToken", b"logLevel", b"process_audio_complete", b"ingest_folder")

Admit = Callable[[Scope, bytes], AbstractAsyncContextManager[Response | None]]


class BodyTooLarge(Exception):
    """The request body is over ``MAX_BODY_BYTES``."""


def declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 18 else None
    return None


async def read_body(receive: Receive, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The whole request body, or None when the client disconnected before sending all of it.

    Raises :class:`BodyTooLarge` as soon as more than ``limit`` bytes have arrived.
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` once, then the client's later messages (disconnect)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


def wants_stream(body: bytes) -> bool:
    """Whether this message's answer may need server-sent events (progress, logs, a long tool)."""
    return any(marker in body for marker in STREAM_MARKERS)


@dataclass(frozen=True, slots=True)
class Managers:
    """The running session managers: plain JSON answers, and server-sent events."""

    json: StreamableHTTPSessionManager
    stream: StreamableHTTPSessionManager


@asynccontextmanager
async def admit_all(scope: Scope, body: bytes) -> AsyncIterator[Response | None]:
    yield None


class McpEndpoint:
    """Hands requests to the MCP session managers while they run (the app's lifespan sets them).

    ``admit`` sees each whole body first and may answer instead of the SDK (the abuse limits of
    :class:`loist.web.mcp_limits.McpLimits`); what it holds (a download slot) lasts the request."""

    def __init__(self, admit: Admit = admit_all, site_name: str = "this server", home_url: str = "/") -> None:
        self.managers: Managers | None = None
        self.admit = admit
        self.site_name = site_name  # named in the answer to a request that is not an MCP message
        self.home_url = home_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        managers = self.managers
        if managers is None:
            message = "the MCP endpoint is not running yet (server starting or stopping)"
            await error_json(503, str(ErrorCode.NOT_READY), message)(scope, receive, send)
            return
        if scope["method"] != "POST":  # both managers are stateless
            message = (
                f"this is the MCP endpoint of {self.site_name} (Model Context Protocol over streamable HTTP): "
                "connect an MCP client to this URL; it sends JSON-RPC messages with POST. This server is "
                f"stateless: no event stream to open, no session. What this server is: {self.home_url}"
            )
            response = error_json(405, str(ErrorCode.INVALID_ARGUMENT), message, headers={"Allow": "POST"})
            await response(scope, receive, send)
            return
        try:
            if (declared_length(scope) or 0) > MAX_BODY_BYTES:
                raise BodyTooLarge
            body = await read_body(receive)
        except BodyTooLarge:
            message = f"an MCP request body may be at most {MAX_BODY_BYTES} bytes"
            await error_json(413, str(ErrorCode.SIZE_EXCEEDED), message)(scope, receive, send)
            return
        if body is None:
            log.info("client left POST /mcp before sending its whole request; nothing was run")
            return
        async with self.admit(scope, body) as refusal:
            if refusal is not None:
                await refusal(scope, receive, send)
                return
            manager = managers.stream if wants_stream(body) else managers.json
            await self._handle(manager, scope, replay(body, receive), send)

    @staticmethod
    async def _handle(manager: StreamableHTTPSessionManager, scope: Scope, receive: Receive, send: Send) -> None:
        finished = False

        async def tracking_send(message: Message) -> None:
            nonlocal finished
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                finished = True
            await send(message)

        await manager.handle_request(scope, receive, tracking_send)
        if not finished:
            log.info("client left POST /mcp before its response was complete")
