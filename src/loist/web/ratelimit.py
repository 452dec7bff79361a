"""Abuse limits per client, with the ``limits`` library: who a client is, and how often it may ask.

A **client** is the bearer token's identity when the request carried the right token (a SHA-256 of
it: the token itself is never a key, a log line or a Redis entry), else its IP address. IPv6
addresses count per /64, the block one subscriber gets. The address is the TCP peer, unless
``TRUSTED_PROXY_COUNT`` proxies stand in front: then it is the ``X-Forwarded-For`` entry the
outermost trusted proxy appended (each proxy appends the address it saw, so with *n* trusted
proxies the *n*-th entry from the right; whatever a client wrote to the left of it is ignored).
uvicorn's own proxy-header handling is off (:func:`loist.serve.uvicorn_config`), so this is the
only reading of the header.

**What is counted** (each a setting, docs/configuration.md):

=============================  =====================  ========================================
setting                        counts                 strategy
=============================  =====================  ========================================
``RATE_LIMIT_AUTH_FAILURES``   failed bearer checks   moving window
``RATE_LIMIT_INGEST``          write tool calls       moving window
``RATE_LIMIT_MCP``             MCP messages           fixed window
``RATE_LIMIT_PUBLIC``          every other request    fixed window
=============================  =====================  ========================================

The moving window keeps one timestamp per hit and refuses exactly the hit that would make more than
N in any window: for the small limits that guard secrets and expensive work (10 token guesses, 30
downloads), where a fixed window would let a client spend 2N across a window boundary. Its memory
grows with N, so the generous limits (600 and 3000 a minute) use a fixed window: one counter per
client (one ``INCR`` in Redis), at the price of up to 2N in the worst case around a boundary,
which is still far from what would hurt.

**Where counts live**: in this process by default; with ``REDIS_URL`` in Redis, shared by every
instance. If Redis does not answer, the check falls back to this process's counts (logged at
WARNING at most once a minute): the limits loosen to per-instance, they never switch off.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter
from limits.errors import StorageError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from loist.config import Settings
from loist.errors import ErrorCode, RateLimited
from loist.web.errors import error_json

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 0.5  # a limit check must not stall a request on a sick Redis
FALLBACK_WARN_EVERY_S = 60.0


class Kind(StrEnum):
    AUTH_FAILURES = "auth"
    INGEST = "ingest"
    MCP = "mcp"
    PUBLIC = "public"


MOVING = frozenset({Kind.AUTH_FAILURES, Kind.INGEST})


@dataclass(frozen=True, slots=True)
class Refusal:
    """A client over a limit: when it may try again, and why."""

    retry_after_s: int
    reason: str

    @property
    def message(self) -> str:
        return f"{self.reason}; retry after {self.retry_after_s} s"

    def error(self) -> RateLimited:
        return RateLimited(self.message, details={"retry_after_s": self.retry_after_s})

    def response(self) -> Any:
        """The HTTP answer: 429 with ``Retry-After`` and the usual JSON error body."""
        headers = {"Retry-After": str(self.retry_after_s)}
        return error_json(429, str(ErrorCode.RATE_LIMITED), self.message, headers=headers)


def token_identity(token: str) -> str:
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def address_identity(address: str) -> str:
    """``ip:<address>``; an IPv6 address stands for its /64."""
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return "peer:" + address.strip()[:64]
    if ip.version == 6 and ip.ipv4_mapped is None:
        return "ip:" + str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return "ip:" + str(ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip)


def client_address(scope: Scope, trusted_proxies: int) -> str:
    """The client's address: the TCP peer, or the entry the outermost trusted proxy appended."""
    client = scope.get("client")
    peer = str(client[0]) if client else "unknown"
    if trusted_proxies <= 0:
        return peer
    hops = [hop.strip() for value in Headers(scope=scope).getlist("x-forwarded-for") for hop in value.split(",")]
    hops = [hop for hop in hops if hop]
    if not hops:
        return peer
    return hops[-trusted_proxies] if len(hops) >= trusted_proxies else hops[0]


def presented_token(scope: Scope) -> str | None:
    scheme, _, token = (Headers(scope=scope).get("authorization") or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class Limiter:
    """The limits of one app: counts per client and kind, in this process or in Redis."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.rate_limits_enabled
        self.auth_enabled = settings.auth_enabled
        self.trusted_proxies = settings.trusted_proxy_count
        self.prefix = settings.rate_limit_key_prefix
        self.items: dict[Kind, RateLimitItem] = {
            Kind.AUTH_FAILURES: parse(settings.rate_limit_auth_failures),
            Kind.INGEST: parse(settings.rate_limit_ingest),
            Kind.MCP: parse(settings.rate_limit_mcp),
            Kind.PUBLIC: parse(settings.rate_limit_public),
        }
        self.local = self._strategies(MemoryStorage())
        self.shared: dict[Kind, RateLimiter] | None = None
        self._storage: Storage | None = None
        if settings.redis_url is not None and self.enabled:
            url = settings.redis_url.get_secret_value()
            self._storage = RedisStorage(
                "async+" + url, wrap_exceptions=True, implementation="redispy",
                socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S,
            )
            self.shared = self._strategies(self._storage)
        self._warned_at = -math.inf

    @staticmethod
    def _strategies(storage: Storage) -> dict[Kind, RateLimiter]:
        moving, fixed = MovingWindowRateLimiter(storage), FixedWindowRateLimiter(storage)
        return {kind: moving if kind in MOVING else fixed for kind in Kind}

    @property
    def where(self) -> str:
        return "redis" if self.shared is not None else "memory"

    # --- who -------------------------------------------------------------------------------------
    def address_of(self, scope: Scope) -> str:
        return address_identity(client_address(scope, self.trusted_proxies))

    def client_of(self, scope: Scope) -> str:
        """The client of a request that passed the bearer check (token identity when auth is on)."""
        token = presented_token(scope) if self.auth_enabled else None
        return token_identity(token) if token else self.address_of(scope)

    # --- how often -------------------------------------------------------------------------------
    async def hit(self, kind: Kind, client: str) -> Refusal | None:
        """Count one request of ``kind``; a :class:`Refusal` when it is over the limit."""
        if not self.enabled:
            return None
        return await self._ask(kind, client, count=True)

    async def blocked(self, kind: Kind, client: str) -> Refusal | None:
        """Whether ``client`` is over the limit of ``kind`` now, without counting anything."""
        if not self.enabled:
            return None
        return await self._ask(kind, client, count=False)

    async def _ask(self, kind: Kind, client: str, *, count: bool) -> Refusal | None:
        if self.shared is not None:
            try:
                return await self._check(self.shared[kind], kind, client, count)
            except StorageError as exc:
                self._warn_fallback(exc)
        return await self._check(self.local[kind], kind, client, count)

    async def _check(self, strategy: RateLimiter, kind: Kind, client: str, count: bool) -> Refusal | None:
        item, keys = self.items[kind], (self.prefix, str(kind), client)
        allowed = await (strategy.hit(item, *keys) if count else strategy.test(item, *keys))
        if allowed:
            return None
        stats = await strategy.get_window_stats(item, *keys)
        retry = max(1, math.ceil(stats.reset_time - time.time()))
        return Refusal(retry, f"too many {DESCRIBED[kind]} from this client (limit {item})")

    def _warn_fallback(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= FALLBACK_WARN_EVERY_S:
            self._warned_at = now
            log.warning("rate limits: Redis did not answer (%s); counting in this instance only",
                        type(exc.__cause__ or exc).__name__)

    async def aclose(self) -> None:
        storage, self._storage = self._storage, None
        if storage is not None:
            bridge = getattr(storage, "bridge", None)
            client = getattr(bridge, "storage", None)
            close = getattr(client, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:  # noqa: BLE001 - closing a sick connection is best effort
                    log.debug("closing the Redis connection failed", exc_info=True)


DESCRIBED = {
    Kind.AUTH_FAILURES: "failed bearer-token checks",
    Kind.INGEST: "write calls (process_audio_complete, update_metadata, delete_audio)",
    Kind.MCP: "MCP requests",
    Kind.PUBLIC: "requests",
}


class PublicRateLimit:
    """``RATE_LIMIT_PUBLIC`` for every request outside ``/mcp`` (which has its own limits)."""

    def __init__(self, app: ASGIApp, limiter: Limiter, mcp_path: str) -> None:
        self.app = app
        self.limiter = limiter
        self.mcp_path = mcp_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != self.mcp_path:
            refusal = await self.limiter.hit(Kind.PUBLIC, self.limiter.address_of(scope))
            if refusal is not None:
                await refusal.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)
