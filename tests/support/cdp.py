"""Headless Chromium driven over the DevTools protocol: open a page, run script in it, read values.

``browser(profile)`` starts Debian's ``chromium`` headless on a free loopback debugging port (it
writes the port to ``DevToolsActivePort`` in the profile; read by a bounded poll), and yields a
:class:`Page` on its first tab. ``page.goto(url)`` navigates; ``page.eval(js)`` evaluates an
expression (promises awaited) and returns its JSON value; ``page.wait(js, what=...)`` polls an
expression until it is truthy, with a deadline, and meanwhile hands the page's calls of bindings
(``Runtime.addBinding``) to ``page.on_binding``. Autoplay is allowed and audio muted, so a test can
call ``play()`` and watch ``currentTime`` advance. Sandboxed iframes stay in the page's process (site isolation
off), so ``Page.getFrameTree`` lists them and a test can evaluate inside one. Used by the embed-player and MCP-app tests.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
START_TIMEOUT_S = 30.0
POLL_S = 0.05  # the interval of a bounded loop, not a wait for a guess


class Page:
    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.bindings: list[dict[str, Any]] = []  # Runtime.bindingCalled events not yet handled
        self.on_binding: Callable[[dict[str, Any]], Awaitable[None]] | None = None

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("method") == "Runtime.bindingCalled":
                self.bindings.append(message["params"])
            if message.get("id") == call_id:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait("document.readyState === 'complete'", what=f"{url} to load")

    async def eval(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait(self, expression: str, *, what: str, timeout_s: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            while self.bindings and self.on_binding is not None:  # a page's call to the test, answered here
                await self.on_binding(self.bindings.pop(0))
            value = await self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"not within {timeout_s}s: {what}")
            await asyncio.sleep(POLL_S)


@asynccontextmanager
async def browser(profile: Path, *, width: int = 480, height: int = 200) -> AsyncIterator[Page]:
    if not Path(CHROMIUM).exists():  # pragma: no cover - chromium is a stated requirement
        pytest.fail("chromium is required for the browser tests")
    proc = subprocess.Popen(  # noqa: S603
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--mute-audio",
         "--autoplay-policy=no-user-gesture-required", "--remote-debugging-address=127.0.0.1",
         "--remote-debugging-port=0", "--disable-features=IsolateSandboxedIframes", "--disable-site-isolation-trials",
         f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            await asyncio.sleep(POLL_S)
        port = int(port_file.read_text().split()[0])
        async with httpx.AsyncClient() as client:
            targets = (await client.get(f"http://127.0.0.1:{port}/json")).json()
        target = next(t for t in targets if t.get("type") == "page")
        async with websockets.connect(target["webSocketDebuggerUrl"], max_size=None) as ws:
            yield Page(ws)
    finally:
        proc.kill()
        proc.wait(timeout=30)
