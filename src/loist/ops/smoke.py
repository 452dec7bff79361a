"""The deployment check (``loist smoke``): prove a running deployment works, end to end, over HTTP.

It is a client of the deployment, nothing more: plain HTTP (httpx) for the public routes and the
official MCP client (streamable HTTP) for the tools, exactly what an assistant and a browser use.
It never opens the database or the bucket. Checks, in order (a check that needs an earlier one's
result is reported as skipped when that one failed):

``live``, ``ready``, ``mcp_auth`` (401 without the token, and with a wrong one, when a token is
given), ``tools_list``, ``ingest`` (``process_audio_complete`` of ``--audio-url`` or of a WAV made
here and served from a loopback HTTP server), ``update``, ``metadata``, ``search``, ``embed``
(og:/twitter: tags), ``oembed``, ``stream_range`` (206, or a 302 to a signed URL that answers
206), ``delete`` and ``gone``.

The generated WAV carries random samples, so its sha256 is new to any library and the track the
check creates is the one it deletes. With ``--audio-url`` the content might already be
catalogued; then the check refuses to update or delete someone's track and says so.

The token is never printed: every message passes through :meth:`Smoke.scrub`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from loist.errors import InvalidArgument
from loist.library.synthetic import wav_bytes

REQUIRED_TOOLS = (
    "process_audio_complete",
    "get_audio_metadata",
    "search_library",
    "update_metadata",
    "delete_audio",
    "get_embed_url",
    "health_check",
)
EMBED_TAGS = ("og:title", "og:audio", "og:url", "twitter:card", "twitter:player")
REQUEST_TIMEOUT_S = 30.0
INGEST_TIMEOUT_S = 180.0
# A track created more than this long before the check started was there already (clock skew margin).
PREEXISTING_MARGIN = timedelta(minutes=10)


@dataclass
class Check:
    """One check's outcome. ``skipped``: not run, because a check it needs failed, or (``not_applicable``)
    because it cannot apply to this run (no token given: nothing to prove); only the latter is no failure."""

    name: str
    ok: bool = False
    skipped: bool = False
    seconds: float = 0.0
    detail: str = ""
    not_applicable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "skipped": self.skipped, "not_applicable": self.not_applicable,
                "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclass
class Report:
    base_url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every check passed or did not apply (and at least one passed)."""
        return any(c.ok for c in self.checks) and all(c.ok or c.not_applicable for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "base_url": self.base_url, "checks": [c.to_dict() for c in self.checks]}

    def lines(self) -> list[str]:
        out = [f"deployment check of {self.base_url}"]
        for c in self.checks:
            mark = "✓" if c.ok else ("-" if c.skipped else "✗")
            out.append(f"  {mark} {c.name:<13} {c.seconds * 1000:7.0f} ms  {c.detail}")
        passed = sum(c.ok for c in self.checks)
        summary = f"{'PASS' if self.ok else 'FAIL'}: {passed}/{len(self.checks)} checks passed"
        skipped = [c.name for c in self.checks if c.skipped]
        if skipped:
            summary += f", {len(skipped)} skipped ({', '.join(skipped)})"
        out.append(summary)
        return out


class CheckFailed(Exception):
    """One check's failure, with the reason a person can act on."""


class NotApplicable(Exception):
    """A check that cannot apply to this run (it is skipped, and says why)."""


def _expect(condition: bool, reason: str) -> None:
    if not condition:
        raise CheckFailed(reason)


# --- the audio the check ingests ---------------------------------------------------------------


def smoke_wav() -> bytes:
    """One second of quiet 16-bit noise at 8 kHz: new bytes (a new sha256) on every call."""
    return wav_bytes(1.0, sample_width=2, noise=True)


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is a loopback name or address (the only case we serve audio from here)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def serve_bytes(data: bytes, filename: str, content_type: str = "audio/wav") -> Iterator[str]:
    """Serve ``data`` at ``http://127.0.0.1:<port>/<filename>`` for the duration of the block."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path.split("?", 1)[0] != f"/{filename}":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep output clean
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="smoke-audio", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/{filename}"
    finally:
        server.shutdown()
        server.server_close()


# --- parsing ------------------------------------------------------------------------------------


class _MetaTags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "meta":
            return
        a = dict(attrs)
        key = a.get("property") or a.get("name")
        if key and a.get("content") is not None and key not in self.tags:
            self.tags[key] = a["content"] or ""


def meta_tags(html: str) -> dict[str, str]:
    parser = _MetaTags()
    parser.feed(html)
    return parser.tags


def _tool_data(result: Any, tool: str) -> dict[str, Any]:
    """The structured content of a successful tool result, or CheckFailed with the tool's error."""
    if getattr(result, "is_error", False):
        content = getattr(result, "structured_content", None) or {}
        error = content.get("error") if isinstance(content, dict) else None
        if isinstance(error, dict):
            raise CheckFailed(f"{tool} answered {error.get('code')}: {error.get('message')}")
        texts = [getattr(c, "text", "") for c in getattr(result, "content", [])]
        raise CheckFailed(f"{tool} failed: {' '.join(t for t in texts if t)[:300]}")
    data = getattr(result, "structured_content", None)
    _expect(isinstance(data, dict), f"{tool} returned no structured content")
    return data  # type: ignore[return-value]


def _describe(exc: BaseException) -> str:
    """One line for an exception, unwrapping exception groups (anyio task groups raise those)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _tool_error_code(result: Any) -> str | None:
    content = getattr(result, "structured_content", None) or {}
    error = content.get("error") if isinstance(content, dict) else None
    return str(error.get("code")) if isinstance(error, dict) else None


# --- the check ---------------------------------------------------------------------------------


class Smoke:
    """One run against one deployment. ``await run()`` returns the :class:`Report`."""

    def __init__(self, base_url: str, *, token: str | None = None, audio_url: str | None = None,
                 timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidArgument(f"--base-url must be an absolute http(s) URL, got {base_url!r}")
        self.base_url = base_url.strip().rstrip("/")
        self.token = token or None
        self.audio_url = audio_url or None
        if self.audio_url is None and not is_loopback_url(self.base_url):
            raise InvalidArgument(
                "--audio-url is required for a deployment that is not on this machine: the server must "
                "fetch the test audio by URL, and a generated file is only served from a loopback server "
                "here (give a short audio file the deployment can download, e.g. a signed URL)"
            )
        self.timeout_s = timeout_s
        self.report = Report(self.base_url)
        self.state: dict[str, Any] = {}
        self.started_at = datetime.now(UTC)

    def scrub(self, text: str) -> str:
        if self.token:
            text = text.replace(self.token, "***")
        return text

    # --- plumbing ------------------------------------------------------------------------------
    async def _step(self, name: str, needs: tuple[str, ...], body: Callable[[], Awaitable[str]]) -> None:
        check = Check(name)
        self.report.checks.append(check)
        missing = [n for n in needs if not self._passed(n)]
        if missing:
            check.skipped = True
            check.detail = f"skipped: needs {', '.join(missing)}"
            return
        started = time.perf_counter()
        try:
            check.detail = self.scrub(await body())
            check.ok = True
        except NotApplicable as exc:
            check.skipped = check.not_applicable = True
            check.detail = self.scrub(str(exc))
        except CheckFailed as exc:
            check.detail = self.scrub(str(exc))
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            check.detail = self.scrub(_describe(exc))
        except Exception as exc:  # noqa: BLE001 - any surprise is this check's failure, with its reason
            check.detail = self.scrub(f"unexpected {_describe(exc)}")
        finally:
            check.seconds = time.perf_counter() - started

    def _passed(self, name: str) -> bool:
        return any(c.name == name and c.ok for c in self.report.checks)

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def _call(self, tool: str, arguments: dict[str, Any], timeout_s: float | None = None) -> Any:
        async with asyncio.timeout(timeout_s or self.timeout_s):
            return await self.state["mcp"].call_tool(tool, arguments)

    # --- run -----------------------------------------------------------------------------------
    async def run(self) -> Report:
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as http:
            self.state["http"] = http
            await self._step("live", (), self.check_live)
            await self._step("ready", (), self.check_ready)
            await self._step("mcp_auth", (), self.check_mcp_auth)
            with self._audio_source() as audio_url:
                self.state["audio_url"] = audio_url
                await self._with_mcp()
        return self.report

    @contextmanager
    def _audio_source(self) -> Iterator[str]:
        if self.audio_url is not None:
            yield self.audio_url
            return
        nonce = uuid.uuid4().hex[:12]
        with serve_bytes(smoke_wav(), f"loist-smoke-{nonce}.wav") as url:
            yield url

    async def _with_mcp(self) -> None:
        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        headers = self._auth()
        timeout = httpx2.Timeout(self.timeout_s, read=INGEST_TIMEOUT_S)
        async with httpx2.AsyncClient(headers=headers, timeout=timeout) as mcp_http:
            transport = streamable_http_client(f"{self.base_url}/mcp", http_client=mcp_http)
            try:
                async with Client(transport, read_timeout_seconds=INGEST_TIMEOUT_S) as client:
                    self.state["mcp"] = client
                    await self._step("tools_list", (), self.check_tools_list)
                    await self._step("ingest", ("tools_list",), self.check_ingest)
                    await self._step("update", ("ingest",), self.check_update)
                    await self._step("metadata", ("ingest",), self.check_metadata)
                    await self._step("search", ("update",), self.check_search)
                    await self._step("embed", ("ingest",), self.check_embed)
                    await self._step("oembed", ("ingest",), self.check_oembed)
                    await self._step("stream_range", ("ingest",), self.check_stream_range)
                    await self._step("delete", ("ingest",), self.check_delete)
                    await self._step("gone", ("delete",), self.check_gone)
            except Exception as exc:  # noqa: BLE001 - a session that cannot open fails tools_list
                if not any(c.name == "tools_list" for c in self.report.checks):
                    why = await self._diagnose_mcp() or _describe(exc)
                    self.report.checks.append(Check("tools_list", detail=self.scrub(
                        f"cannot open an MCP session at {self.base_url}/mcp: {why}")))
                    self._skip_rest(after="tools_list")

    async def _diagnose_mcp(self) -> str | None:
        """Why /mcp refused a session, from a plain request with the same headers (401, 421, 5xx...)."""
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"} | self._auth()
        try:
            r = await self.state["http"].post(f"{self.base_url}/mcp", json=body, headers=headers)
        except httpx.HTTPError as exc:
            return _describe(exc)
        if r.status_code < 400:
            return None
        try:
            error = r.json().get("error", {})
            message = error.get("message") if isinstance(error, dict) else str(error)
        except ValueError:
            message = r.text[:200]
        hint = {401: " (is --token the deployment's BEARER_TOKEN?)",
                421: " (the Host header is not allowed: set ALLOWED_HOSTS or EMBED_BASE_URL on the server)"}
        return f"HTTP {r.status_code}: {message}{hint.get(r.status_code, '')}"

    def _skip_rest(self, after: str) -> None:
        for name in ("ingest", "update", "metadata", "search", "embed", "oembed", "stream_range", "delete", "gone"):
            self.report.checks.append(Check(name, skipped=True, detail=f"skipped: needs {after}"))

    # --- the checks ----------------------------------------------------------------------------
    async def check_live(self) -> str:
        r = await self.state["http"].get(f"{self.base_url}/health/live")
        _expect(r.status_code == 200, f"/health/live answered {r.status_code}: {r.text[:200]}")
        return "200"

    async def check_ready(self) -> str:
        r = await self.state["http"].get(f"{self.base_url}/health/ready")
        if r.status_code != 200:
            reason = r.text[:300]
            try:
                reason = r.json().get("reason", reason)
            except ValueError:
                pass
            raise CheckFailed(f"/health/ready answered {r.status_code}: {reason}")
        checks = r.json().get("checks", {})
        db = checks.get("database", {}).get("dialect", "?")
        store = checks.get("storage", {}).get("backend", "?")
        return f"200 (database {db}, storage {store})"

    async def check_mcp_auth(self) -> str:
        if not self.token:
            raise NotApplicable("skipped: no token given (give --token, the server's BEARER_TOKEN, to prove /mcp refuses anonymous calls)")
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        http = self.state["http"]
        anonymous = await http.post(f"{self.base_url}/mcp", json=body, headers=headers)
        _expect(anonymous.status_code == 401, f"/mcp without a token answered {anonymous.status_code}, expected 401")
        wrong = await http.post(f"{self.base_url}/mcp", json=body,
                                headers=headers | {"Authorization": "Bearer not-the-token"})
        _expect(wrong.status_code == 401, f"/mcp with a wrong token answered {wrong.status_code}, expected 401")
        return "401 without a token and with a wrong one"

    async def check_tools_list(self) -> str:
        async with asyncio.timeout(self.timeout_s):
            tools = await self.state["mcp"].list_tools()
        names = [t.name for t in tools.tools]
        missing = [n for n in REQUIRED_TOOLS if n not in names]
        _expect(not missing, f"tools/list lacks {', '.join(missing)} (has {', '.join(names)})")
        return f"{len(names)} tools"

    async def check_ingest(self) -> str:
        url = self.state["audio_url"]
        filename = urlsplit(url).path.rsplit("/", 1)[-1] or None
        source: dict[str, Any] = {"type": "http_url", "url": url}
        if filename:
            source["filename"] = filename
        result = await self._call("process_audio_complete", {"source": source}, INGEST_TIMEOUT_S)
        if self.audio_url is None and _tool_error_code(result) == "URL_NOT_ALLOWED":
            raise CheckFailed(
                "the server refuses to fetch the test audio this check serves from 127.0.0.1 (loopback): "
                "start the server with ALLOW_PRIVATE_URLS=true (`make serve` does), or give --audio-url "
                "with a public URL of a short audio file"
            )
        data = _tool_data(result, "process_audio_complete")
        track = data["track"]
        _expect(track.get("status") == "COMPLETED", f"track status is {track.get('status')}")
        created = datetime.fromisoformat(track["created_at"])
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if created < self.started_at - PREEXISTING_MARGIN:
            raise CheckFailed(
                f"the audio at --audio-url is already in the library (track {track['id']}, added {track['created_at']}); "
                "the check only updates and deletes a track it created: use audio that is new to this library"
            )
        self.state["track"] = track
        self.state["links"] = data.get("links", {})
        audio = track.get("audio", {})
        return f"track {track['id']} ({audio.get('format')}, {audio.get('duration_s')}s)"

    async def check_update(self) -> str:
        title = f"Loist smoke {uuid.uuid4().hex[:10]}"
        track_id = self.state["track"]["id"]
        data = _tool_data(await self._call("update_metadata", {"audioId": track_id, "fields": {"title": title}}),
                          "update_metadata")
        _expect(data["track"]["tags"]["title"] == title, "update_metadata did not change the title")
        self.state["title"] = title
        return f"title set to {title!r}"

    async def check_metadata(self) -> str:
        track_id = self.state["track"]["id"]
        data = _tool_data(await self._call("get_audio_metadata", {"audioId": track_id}), "get_audio_metadata")
        _expect(data["track"]["id"] == track_id, "get_audio_metadata returned another track")
        _expect(data["track"]["sha256"] == self.state["track"]["sha256"], "sha256 differs from the ingested one")
        return "matches the ingested track"

    async def check_search(self) -> str:
        track_id = self.state["track"]["id"]
        query = self.state["title"].rsplit(" ", 1)[-1]
        data = _tool_data(await self._call("search_library", {"query": query, "limit": 5}), "search_library")
        ids = [hit["track"]["id"] for hit in data.get("items", [])]
        _expect(track_id in ids, f"searching {query!r} did not find track {track_id} (got {len(ids)} hits)")
        return f"found by {query!r}"

    async def check_embed(self) -> str:
        track_id = self.state["track"]["id"]
        url = f"{self.base_url}/embed/{track_id}"
        r = await self.state["http"].get(url)
        _expect(r.status_code == 200, f"GET /embed/{track_id} answered {r.status_code}")
        tags = meta_tags(r.text)
        missing = [t for t in EMBED_TAGS if not tags.get(t)]
        _expect(not missing, f"embed page lacks {', '.join(missing)}")
        _expect(tags["twitter:card"] == "player", f"twitter:card is {tags['twitter:card']!r}, expected 'player'")
        title = self.state.get("title")
        if title:
            _expect(tags["og:title"] == title, f"og:title is {tags['og:title']!r}, expected {title!r}")
        csp = r.headers.get("content-security-policy", "")
        _expect("frame-ancestors" in csp, "embed page has no Content-Security-Policy frame-ancestors header")
        self.state["embed_url"] = tags["og:url"]
        return f"og/twitter tags present; og:audio {tags['og:audio']}"

    async def check_oembed(self) -> str:
        embed_url = self.state.get("embed_url") or self.state["links"].get("embed_url")
        r = await self.state["http"].get(f"{self.base_url}/oembed?url={quote(embed_url, safe='')}&format=json")
        _expect(r.status_code == 200, f"/oembed answered {r.status_code}: {r.text[:200]}")
        data = r.json()
        _expect(data.get("version") == "1.0", f"oEmbed version is {data.get('version')!r}")
        _expect(data.get("type") == "rich", f"oEmbed type is {data.get('type')!r}, expected 'rich'")
        _expect("<iframe" in str(data.get("html", "")), "oEmbed html has no <iframe>")
        return f"rich {data.get('width')}x{data.get('height')}"

    async def check_stream_range(self) -> str:
        track_id = self.state["track"]["id"]
        size = int(self.state["track"].get("size_bytes") or 0)
        http = self.state["http"]
        r = await http.get(f"{self.base_url}/audio/{track_id}/stream", headers={"Range": "bytes=0-99"})
        via = ""
        if r.status_code in (302, 303, 307):
            location = r.headers.get("location", "")
            _expect(bool(location), f"stream answered {r.status_code} without a Location")
            _expect("no-store" in r.headers.get("cache-control", ""), "the redirect to a signed URL is cacheable")
            r = await http.get(location, headers={"Range": "bytes=0-99"})
            via = " via a signed URL"
        _expect(r.status_code == 206, f"Range request answered {r.status_code}{via}, expected 206")
        _expect(len(r.content) == min(100, size or 100), f"got {len(r.content)} bytes for bytes=0-99")
        content_range = r.headers.get("content-range", "")
        _expect(content_range.startswith("bytes 0-"), f"Content-Range is {content_range!r}")
        _expect(r.content[:4] in (b"RIFF", b"ID3\x03", b"fLaC", b"OggS") or self.audio_url is not None,
                "the first bytes are not the audio that was ingested")
        return f"206 {content_range}{via}"

    async def check_delete(self) -> str:
        track_id = self.state["track"]["id"]
        data = _tool_data(await self._call("delete_audio", {"audioId": track_id}), "delete_audio")
        _expect(data.get("deleted") is True, "delete_audio did not report deleted=true")
        return "deleted"

    async def check_gone(self) -> str:
        track_id = self.state["track"]["id"]
        result = await self._call("get_audio_metadata", {"audioId": track_id})
        code = _tool_error_code(result)
        _expect(code == "NOT_FOUND", f"get_audio_metadata after delete answered {code or 'success'}, expected NOT_FOUND")
        r = await self.state["http"].get(f"{self.base_url}/audio/{track_id}/stream")
        _expect(r.status_code == 404, f"stream after delete answered {r.status_code}, expected 404")
        return "NOT_FOUND and stream 404"


async def run_smoke(base_url: str, *, token: str | None = None, audio_url: str | None = None,
                    timeout_s: float = REQUEST_TIMEOUT_S) -> Report:
    """Run every check against ``base_url`` (InvalidArgument for a bad URL or a missing audio URL)."""
    return await Smoke(base_url, token=token, audio_url=audio_url, timeout_s=timeout_s).run()

