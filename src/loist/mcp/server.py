"""The MCP server factory: one :class:`MCPServer` per call, built from a :class:`Settings`.

Nothing happens at import time. :func:`create_mcp_server` registers the tools
(:mod:`loist.mcp.tools`) and resources (:mod:`loist.mcp.resources`) against a :class:`Deps`; the
transport decides what is allowed (a ``file`` ingest source only over stdio, where the server runs
on the user's own machine). :func:`mcp_http_managers` builds the streamable-HTTP session managers the
web app serves at ``/mcp``, with the SDK's Host/Origin (DNS-rebinding) protection configured from
``EMBED_BASE_URL`` and ``ALLOWED_HOSTS`` so it works behind Cloud Run's host name.

Failures are mapped here, once: :class:`LoistMCPServer` turns every failed tool call into an
``isError`` result through :func:`loist.mcp.results.error_result`, and every failed resource read
into a JSON-RPC error carrying the stable code.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, UnexpectedResourceError
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, InputRequiredResult
from pydantic import AnyUrl

from loist import __version__
from loist.config import Settings
from loist.errors import ErrorCode, LoistError, public_message
from loist.library.holder import LibraryHolder
from loist.mcp import observe
from loist.mcp.app import player_app
from loist.mcp.deps import Deps, Transport
from loist.mcp.resources import register_resources, stream_contents
from loist.mcp.results import error_result
from loist.mcp.schemas import compact_schema
from loist.mcp.tools import register_tools
from loist.web.admission import AdmissionLimits, ToolBounds

if TYPE_CHECKING:
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from loist.library.service import Library

logger = logging.getLogger("loist.mcp")

STREAM_URI = re.compile(r"music-library://audio/(?P<id>[^/?#]+)/stream")

INSTRUCTIONS = """\
Loist is a music library. Add audio with process_audio_complete (an http(s) URL; a local file path
only when connected over stdio) or a whole local folder with ingest_folder (stdio only), find it
with search_library or list_library, read one track with
get_audio_metadata, share it with get_embed_url (a public player page that unfurls in Slack,
Discord and Notion), fix tags with update_metadata, remove it with delete_audio. Track ids are
UUIDs. Failed calls return isError with a stable code such as NOT_FOUND or INVALID_ARGUMENT."""


class LoistMCPServer(MCPServer[dict[str, Any]]):
    """:class:`MCPServer` with Loist's error mapping (tools and resources) and inline stream bytes."""

    def __init__(self, deps: Deps, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.deps = deps
        self.bounds = ToolBounds(AdmissionLimits.from_settings(deps.settings))

    def publish_output_schemas(self) -> None:
        """Publish each tool's ``outputSchema`` in its equivalent fast-to-validate form, and trust our results.

        Clients validate every structured result against the schema (see
        :func:`loist.mcp.schemas.compact_schema`). The SDK would also validate each result against the
        output model again on the server, a second pydantic pass over the whole answer (0.2 ms for a
        20-hit search page): every tool returns :func:`loist.mcp.results.ok` of an instance of that very
        model, so its structured content conforms by construction. The SDK reads these fields live and
        documents a schema without a model as "advertised but not validated"; that is what each tool
        becomes here. Called once, after registration and before any listing.
        """
        for tool in self._tool_manager.list_tools():
            if tool.fn_metadata.output_schema is not None:
                tool.fn_metadata.output_schema = compact_schema(tool.fn_metadata.output_schema)
                tool.fn_metadata.output_model = None
                tool.__dict__.pop("output_schema", None)  # Tool.output_schema is a cached property

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[dict[str, Any], Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        started = time.perf_counter()
        try:
            gate = self.bounds.enter(name)  # OVERLOADED past MAX_CONCURRENT_INGESTS
            try:
                result = await super().call_tool(name, arguments, context)
            finally:
                if gate is not None:
                    gate.leave()
        except MCPError:
            observe.record(self.tool_names, name, None, time.perf_counter() - started)
            raise
        except Exception as exc:
            result = error_result(name, exc, public=self.deps.transport == "http")
        # a call cancelled (its client left) is not counted: it has no outcome
        observe.record(self.tool_names, name, result, time.perf_counter() - started)
        return result

    @functools.cached_property
    def tool_names(self) -> frozenset[str]:
        return frozenset(tool.name for tool in self._tool_manager.list_tools())

    async def read_resource(
        self, uri: AnyUrl | str, context: Context[dict[str, Any], Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        try:
            match = STREAM_URI.fullmatch(str(uri))
            if match:
                return await stream_contents(self.deps, match["id"])
            return await super().read_resource(uri, context)
        except LoistError as exc:
            raise _resource_error(uri, exc, self.deps.transport == "http") from None
        except ResourceError as exc:
            if isinstance(exc.__cause__, LoistError):
                raise _resource_error(uri, exc.__cause__, self.deps.transport == "http") from None
            raise
        except MCPError:
            raise
        except Exception as exc:  # a crash on the stream path: generic to the client, traceback logged
            raise UnexpectedResourceError(f"Error reading resource {uri}") from exc


def _resource_error(uri: AnyUrl | str, exc: LoistError, public: bool) -> MCPError:
    # A missing resource or a bad id is "invalid params" (SEP-2164); anything else is a server error.
    # Over HTTP a failure of the deployment carries public words only (loist.errors.PUBLIC_MESSAGE).
    code = INVALID_PARAMS if exc.code in (ErrorCode.NOT_FOUND, ErrorCode.INVALID_ARGUMENT) else INTERNAL_ERROR
    message = public_message(exc) if public else exc.message
    if message != exc.message:
        logger.warning("resource %s failed: %s", uri, exc)
        error = {"code": str(exc.code), "message": message}
    else:
        logger.info("resource %s failed: %s", uri, exc)
        error = exc.to_dict()
    return MCPError(code=code, message=f"{exc.code}: {message}", data={"uri": str(uri), "error": error})


def create_mcp_server(
    settings: Settings,
    library: Library | LibraryHolder | None = None,
    *,
    transport: Transport | None = None,
) -> LoistMCPServer:
    """Build a server.

    ``library``: an open :class:`~loist.library.service.Library` (the caller closes it); or a
    :class:`~loist.library.holder.LibraryHolder` its owner keeps open while the server runs (the
    web app's); or ``None`` to let the server's lifespan open one from ``settings`` and close it
    when the last client leaves. ``transport`` defaults to ``settings.server_transport``.
    """
    chosen: Transport = transport or settings.server_transport
    if isinstance(library, LibraryHolder):
        deps = Deps(settings=settings, transport=chosen, holder=library, shared=True)
    else:
        deps = Deps(settings=settings, transport=chosen, holder=LibraryHolder(library, name="the MCP server's library"))

    @asynccontextmanager
    async def lifespan(_: MCPServer[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        async with deps.in_use():
            yield {}

    server = LoistMCPServer(
        deps,
        name=settings.server_name,
        title=settings.server_name,
        instructions=INSTRUCTIONS,
        version=__version__,
        website_url=settings.public_base_url,
        lifespan=lifespan,
        log_level=settings.log_level,
        extensions=[player_app(settings)],  # the in-chat player (loist.mcp.app)
    )
    register_tools(server, deps)
    server.publish_output_schemas()
    register_resources(server, deps)
    return server


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host/Origin allow-lists for ``/mcp``: loopback, ``EMBED_BASE_URL``'s host and ``ALLOWED_HOSTS``.

    ``ALLOWED_HOSTS=*`` turns the check off (for a proxy that rewrites Host; the bearer token is
    then the only guard). Origins: loopback, ``EMBED_BASE_URL`` and ``CORS_ORIGINS``.
    """
    if "*" in settings.allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
    origins = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]

    def add_host(netloc: str) -> None:
        netloc = netloc.strip().lower()
        if not netloc:
            return
        hosts.append(netloc)
        if not re.search(r":\d+$", netloc):  # no explicit port: also accept any port
            hosts.append(f"{netloc}:*")

    base = urlsplit(settings.public_base_url)
    add_host(base.netloc)
    origins.append(f"{base.scheme}://{base.netloc}".lower())
    if not settings.binds_all_interfaces:
        add_host(settings.server_host if ":" not in settings.server_host else f"[{settings.server_host}]")
    for entry in settings.allowed_hosts:
        add_host(urlsplit(entry).netloc if "://" in entry else entry)
    origins.extend(o.rstrip("/") for o in settings.cors_origins if o != "*")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(dict.fromkeys(hosts)),
        allowed_origins=list(dict.fromkeys(origins)),
    )


def mcp_http_managers(
    server: MCPServer[Any], settings: Settings, *, path: str = "/mcp"
) -> tuple[StreamableHTTPSessionManager, StreamableHTTPSessionManager]:
    """The two streamable-HTTP session managers serving MCP at ``path``: (plain JSON, server-sent events).

    Both are stateless (no session affinity needed, so any Cloud Run instance can answer any
    request). They differ in how an answer travels: the first answers ``application/json``, the
    second a ``text/event-stream`` that can carry progress notifications during a long ingest and,
    on the 2026 protocol, keep-alive pings. :class:`loist.web.mcp_route.McpEndpoint` sends each
    message to the one it needs; most need no stream, and the JSON answer costs the server 0.2-0.6 ms
    less per call (no per-request task group, memory stream and SSE encoding; measured in
    docs/benchmarks.md). Whoever serves them runs each one's ``run()`` in its lifespan.
    """
    security = transport_security(settings)

    def manager(json_response: bool) -> StreamableHTTPSessionManager:
        server.streamable_http_app(
            streamable_http_path=path,
            stateless_http=True,
            json_response=json_response,
            transport_security=security,
            host=settings.server_host,
        )
        return server.session_manager  # the manager the call above just built

    return manager(True), manager(False)


async def run_stdio(settings: Settings, library: Library | None = None) -> None:
    """Serve MCP over this process's stdin/stdout until the client closes it (logs go to stderr)."""
    server = create_mcp_server(settings, library, transport="stdio")
    await server.run_stdio_async()
