"""The HTTP/1.1 connection: uvicorn's httptools protocol with limits on what a client may hold.

uvicorn with httptools (the fast parser ``uvicorn[standard]`` installs) caps neither the size nor
the number of request header fields, and gives a connection no deadline until it has finished a
first response: 20 connections each sending a header that never ends grew the server by hundreds
of megabytes, and a socket that sends nothing (or one byte now and then) stays open for ever.
:class:`LimitedHttpToolsProtocol` keeps httptools (pure-Python h11 costs request throughput) and
adds, per connection:

- **Head size** (``HTTP_MAX_HEADER_BYTES``): the request target and header fields together. A head
  still incomplete past the limit is refused as soon as a read ends (so at most one read, 256 KiB,
  beyond the limit is ever buffered); a complete head is measured exactly.
- **Header count** (``HTTP_MAX_HEADERS``), checked when the head is complete (the size limit
  bounds an endless run of small fields before that).
  Both answer ``431 Request Header Fields Too Large`` and close the connection.
- **Head deadline** (``HTTP_HEADER_TIMEOUT_S``): a request head must arrive in full within this
  long of its first read (or of the connection opening). Bytes arriving do not extend it, so a
  slowloris client that trickles a header is closed like an idle one: ``408`` when part of a head
  had arrived, silently when nothing had.
- **Body deadline** (``HTTP_BODY_TIMEOUT_S``): once its head is in, a request's whole body must
  arrive within this long; bytes arriving do not extend it. When the server itself has stopped
  reading (flow control: the application has not taken what arrived), the deadline starts again.
  The application sees a disconnect.
- **Keep-alive** (``HTTP_KEEPALIVE_TIMEOUT_S``): uvicorn's own idle timeout between requests.

Refusals and timeouts are logged at INFO (they are a client's doing, not a server fault).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from loist.config import Settings
from loist.errors import ErrorCode

log = logging.getLogger(__name__)

LINE_OVERHEAD = 4  # ": " and CRLF around each header field, as counted for a complete head


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    body_timeout_s: float
    keepalive_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.http_max_header_bytes,
            max_headers=settings.http_max_headers,
            header_timeout_s=settings.http_header_timeout_s,
            body_timeout_s=settings.http_body_timeout_s,
            keepalive_timeout_s=settings.http_keepalive_timeout_s,
        )


class HeadTooLarge(Exception):
    """Raised inside a parser callback (httptools wraps it); ``data_received`` answers 431."""


def protocol_class(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to ``limits``."""
    return type("LoistHttpProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """Deadlines are armed lazily, only when a read ends inside a head or a body, so the common
    request that arrives in one read costs no timer at all (keep-alive uses uvicorn's own)."""

    limits: ClassVar[HttpLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.timeout_keep_alive = self.limits.keepalive_timeout_s  # type: ignore[assignment]
        self._in_head = False  # a request head has begun and is not complete
        self._head_bytes = 0  # bytes of earlier reads that ended inside the current head
        self._read_size = 0  # bytes of the read being parsed
        self._deadline: asyncio.TimerHandle | None = None

    # --- deadlines -------------------------------------------------------------------------------
    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _busy(self) -> bool:
        """A response is still being produced: never cut it short for a pipelined head's sake."""
        return self.cycle is not None and not self.cycle.response_complete

    def _head_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._busy():
            self._arm(self.limits.header_timeout_s, self._head_expired)
            return
        log.info("%s: request head not complete within HTTP_HEADER_TIMEOUT_S=%gs; connection closed",
                 self._peer(), self.limits.header_timeout_s)
        if self._head_bytes:
            self._refuse(408, "the request head did not arrive in time")
        else:
            self.transport.close()

    def _body_expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self.cycle is None or not self.cycle.more_body:
            return
        if self.flow.read_paused:  # we stopped reading (the app is busy): not the client's delay
            self._arm(self.limits.body_timeout_s, self._body_expired)
            return
        log.info("%s: request body not complete within HTTP_BODY_TIMEOUT_S=%gs; connection closed",
                 self._peer(), self.limits.body_timeout_s)
        self.transport.close()

    # --- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.header_timeout_s, self._head_expired)  # a socket that never says a word

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._read_size = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadTooLarge):
                self._too_large(str(exc.__context__))
            else:
                self._invalid()
            return
        except httptools.HttpParserError:
            self._invalid()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head:  # this read ended inside a head
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._too_large(f"request head larger than {self.limits.max_header_bytes} bytes")
            elif self._deadline is None:  # its deadline runs from here; later bytes do not move it
                self._arm(self.limits.header_timeout_s, self._head_expired)
        elif self._deadline is None and self.cycle is not None and self.cycle.more_body:  # ... inside a body
            if not self.transport.is_closing():
                self._arm(self.limits.body_timeout_s, self._body_expired)

    # --- parser callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head, self._head_bytes = True, 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._deadline is not None:
            self._disarm()
        limits = self.limits
        if len(self.headers) > limits.max_headers:
            raise HeadTooLarge(f"more than {limits.max_headers} header fields")
        if self._head_bytes + self._read_size > limits.max_header_bytes:  # could be too large: measure it
            size = len(self.url) + sum(len(name) + len(value) + LINE_OVERHEAD for name, value in self.headers)
            if size > limits.max_header_bytes:
                raise HeadTooLarge(f"request head larger than {limits.max_header_bytes} bytes")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._deadline is not None:
            self._disarm()

    # --- refusals --------------------------------------------------------------------------------
    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "client"

    def _too_large(self, reason: str) -> None:
        log.info("%s: %s; answered 431 and closed the connection", self._peer(), reason)
        self._refuse(431, f"{reason} (see HTTP_MAX_HEADER_BYTES and HTTP_MAX_HEADERS)")

    def _invalid(self) -> None:
        self.logger.warning("Invalid HTTP request received.")
        self._refuse(400, "invalid HTTP request")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status`` with our JSON error body and close, unless a response is under way."""
        self._disarm()
        if self.transport.is_closing():
            return
        if self._busy():  # a reply now would land inside another response: just hang up
            self.transport.close()
            return
        body = json.dumps({"error": {"code": str(ErrorCode.INVALID_ARGUMENT), "message": message}}).encode()
        head = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            head += [name, b": ", value, b"\r\n"]
        head += [b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                 b"connection: close\r\n", b"\r\n"]
        self.transport.write(b"".join(head) + body)
        self.transport.close()
