"""The in-chat player (MCP App) in headless Chromium, inside a minimal host page.

The host page does what an MCP Apps host does, no more: it renders the ``ui://`` resource in a
sandboxed iframe (``sandbox="allow-scripts"``, an opaque origin), answers ``ui/initialize`` with a
host context (dark theme), pushes a real tool result (``ui/notifications/tool-result``) once the app
says ``ui/notifications/initialized``, sizes the iframe from ``ui/notifications/size-changed``, and
proxies the app's ``tools/call`` and ``resources/read`` to the real MCP server (through a DevTools
binding to this test, which calls the server with the official MCP client). The audio comes from a
real server's stable stream URL, and the test checks that it plays.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from loist.config import Settings
from loist.library.service import Library
from loist.mcp.app import PLAYER_URI
from loist.mcp.server import create_mcp_server
from loist.web.app import create_app
from tests.support.audio import AudioFactory
from tests.support.cdp import Page, browser
from tests.support.httpserver import LoopbackServer
from tests.support.liveserver import live_server

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

APP_MIME = "text/html;profile=mcp-app"

HOST_PAGE = """<!doctype html><html><body style="margin:0">
<iframe id="app" sandbox="allow-scripts" style="width:460px;height:10px;border:0"></iframe>
<script>
var frame = document.getElementById('app'), pending = null;
window.host = {initialized: false, sizes: [], calls: [], theme: 'dark'};
function post(m) { frame.contentWindow.postMessage(Object.assign({jsonrpc: '2.0'}, m), '*'); }
window.startApp = function (html, result) { pending = result; frame.srcdoc = html; };
window.pushResult = function (result) {
  post({method: 'ui/notifications/tool-result', params: result}); };
window.hostReply = function (id, result, error) { post(error ? {id: id, error: error} : {id: id, result: result}); };
window.addEventListener('message', function (e) {
  if (e.source !== frame.contentWindow) return;
  var m = e.data || {};
  if (m.method === 'ui/initialize') {
    post({id: m.id, result: {protocolVersion: m.params.protocolVersion, hostInfo: {name: 'test-host', version: '1'},
      hostCapabilities: {serverTools: {}, serverResources: {}}, hostContext: {theme: host.theme, displayMode: 'inline'}}});
  } else if (m.method === 'ui/notifications/initialized') {
    host.initialized = true; if (pending) window.pushResult(pending);
  } else if (m.method === 'ui/notifications/size-changed') {
    host.sizes.push(m.params); frame.style.height = m.params.height + 'px';
  } else if (m.method === 'tools/call' || m.method === 'resources/read') {
    host.calls.push(m.method + ' ' + JSON.stringify(m.params)); hostProxy(JSON.stringify(m));
  }
});
</script></body></html>"""


def _settings(data_dir: Path, base_url: str = "http://127.0.0.1") -> Settings:
    return Settings(_env_file=None, data_dir=data_dir, embed_base_url=base_url, jobs_poll_s=0.2)  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("mcp-app")
    with live_server(lambda base: create_app(_settings(data_dir, base), job_workers=1)) as url:
        yield url, data_dir


def _dump(result: Any) -> dict[str, Any]:
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


async def _frame_eval(page: Page, expression: str) -> Any:
    tree = await page.send("Page.getFrameTree")
    frame_id = tree["frameTree"]["childFrames"][0]["frame"]["id"]
    world = await page.send("Page.createIsolatedWorld", frameId=frame_id, worldName="test")
    result = await page.send(
        "Runtime.evaluate", expression=expression, contextId=world["executionContextId"], returnByValue=True
    )
    return result["result"].get("value")


async def _frame_wait(page: Page, expression: str, *, what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        while page.bindings and page.on_binding is not None:
            await page.on_binding(page.bindings.pop(0))
        value = await _frame_eval(page, expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout_s}s: {what}")
        await asyncio.sleep(0.05)


def _wait_waveform(base: str, track_id: str) -> None:
    deadline = time.monotonic() + 60
    while httpx.get(f"{base}/audio/{track_id}/waveform.json").status_code != 200:
        if time.monotonic() > deadline:
            raise TimeoutError("no waveform within 60 s")
        time.sleep(0.1)


async def test_the_player_app_plays_a_track_it_received_as_a_tool_result(
    site: tuple[str, Path], tmp_path: Path, audio_factory: AudioFactory, http_server: LoopbackServer
) -> None:
    base, data_dir = site
    async with await Library.open(_settings(data_dir, base)) as library:
        server = create_mcp_server(_settings(data_dir, base), library, transport="stdio")
        async with Client(server) as client:
            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            for name in ("get_audio_metadata", "search_library", "process_audio_complete"):
                assert (tools[name].meta or {})["ui"]["resourceUri"] == PLAYER_URI
            [app] = (await client.read_resource(PLAYER_URI)).contents
            assert app.mime_type == APP_MIME
            listed = {r.uri: r for r in (await client.list_resources()).resources}
            assert (listed[PLAYER_URI].meta or {})["ui"]["csp"] == {"connectDomains": [base], "resourceDomains": [base]}

            first = await client.call_tool("process_audio_complete", {"source": {"type": "file", "path": str(
                audio_factory("mp3", tags={"title": "First light", "artist": "The Testers"}, duration=4.0))}})
            assert not first.is_error and first.content[0].type == "text"  # hosts without apps: text too
            first_id = first.structured_content["track"]["id"]
            second = await client.call_tool("process_audio_complete", {"source": {"type": "file", "path": str(
                audio_factory("ogg", tags={"title": "Second wind", "artist": "The Testers"}, duration=3.0))}})
            second_id = second.structured_content["track"]["id"]
            await asyncio.to_thread(_wait_waveform, base, first_id)

            async with browser(tmp_path, width=520, height=400) as page:

                async def proxy(call: dict[str, Any]) -> None:
                    message = json.loads(call["payload"])
                    params = message["params"]
                    if message["method"] == "tools/call":
                        answer = _dump(await client.call_tool(params["name"], params.get("arguments") or {}))
                    else:
                        answer = _dump(await client.read_resource(params["uri"]))
                    await page.eval(f"hostReply({json.dumps(message['id'])}, {json.dumps(answer)})")

                page.on_binding = proxy
                await page.send("Runtime.enable")
                await page.send("Runtime.addBinding", name="hostProxy")
                # the host page is served from loopback too (a public page may not reach a local server)
                await page.goto(http_server.file("/host.html", HOST_PAGE.encode(), content_type="text/html"))
                await page.eval(f"startApp({json.dumps(app.text)}, {json.dumps(_dump(first))})")
                await page.wait("host.initialized", what="ui/notifications/initialized")

                title = await _frame_wait(page, "document.getElementById('title').textContent", what="the track")
                assert title == "First light"
                assert await _frame_eval(page, "document.getElementById('artist').textContent") == "The Testers"
                assert await _frame_eval(page, "document.documentElement.dataset.theme") == "dark"
                assert await _frame_eval(page, "document.getElementById('audio').src") == f"{base}/audio/{first_id}/stream"
                sizes = await page.wait("host.sizes.length && host.sizes", what="ui/notifications/size-changed")
                assert sizes[-1]["height"] > 50
                assert await page.eval("parseInt(document.getElementById('app').style.height)") == sizes[-1]["height"]
                # the waveform: fetched from the server where the host allows it, else read through the host
                await _frame_wait(page, "document.getElementById('wf').width > 0", what="the waveform canvas")
                await page.wait("host.calls.some(c => c.startsWith('resources/read'))", what="a waveform read via the host")

                await _frame_eval(page, "document.getElementById('play').click()")
                await _frame_wait(page, "document.getElementById('audio').currentTime > 0.3", what="the first track to play")

                # a search result: the list, and a click that asks the server (tools/call through the host)
                found = await client.call_tool("search_library", {"query": "Testers"})
                await page.eval(f"pushResult({json.dumps(_dump(found))})")
                await _frame_wait(page, "document.querySelectorAll('#list li').length === 2", what="the list")
                index = [hit["track"]["id"] for hit in found.structured_content["items"]].index(second_id)
                await _frame_eval(page, f"document.querySelectorAll('#list li')[{index}].click()")
                await page.wait("host.calls.some(c => c.startsWith('tools/call'))", what="tools/call through the host")
                await _frame_wait(page, f"document.getElementById('audio').src.includes('{second_id}')", what="the pick")
                await _frame_wait(page, "document.getElementById('audio').currentTime > 0.3", what="the second track to play")
                calls = await page.eval("host.calls")
                assert any(call.startswith("tools/call") and "get_audio_metadata" in call for call in calls)
