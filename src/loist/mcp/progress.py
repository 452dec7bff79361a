"""Turn the library's ingest progress callbacks into MCP progress notifications.

The library reports ``(stage, done, total)`` for the stages ``fetching`` (bytes), ``reading_tags``,
``storing`` and ``cataloguing``. MCP wants one number that only ever grows, so each stage owns a
band of a 0..100 scale: fetching fills 0..70 by bytes, the later stages sit at 75, 85 and 95, and
:meth:`ProgressReporter.done` sends 100. Notifications are throttled (a new one only when the
number grows by at least half a point) so a large download does not flood the client.
"""

from __future__ import annotations

from mcp.server.mcpserver import Context

STAGE_FLOOR: dict[str, float] = {"fetching": 0.0, "reading_tags": 75.0, "storing": 85.0, "cataloguing": 95.0}
FETCH_BAND = 70.0
UNKNOWN_SIZE_SCALE = 8 * 1024 * 1024  # bytes at which an unknown-size download shows half its band
MIN_STEP = 0.5


def _mb(n: int) -> str:
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n / (1024 * 1024):.1f} MB"


class ProgressReporter:
    """A library ``progress`` callback bound to one tool call's MCP context."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._last = -1.0

    async def __call__(self, stage: str, done: int | None = None, total: int | None = None) -> None:
        if stage == "fetching":
            value, message = self._fetching(done, total)
        else:
            value = STAGE_FLOOR.get(stage, self._last)
            message = stage.replace("_", " ")
        await self._send(value, message, force=stage != "fetching")

    def _fetching(self, done: int | None, total: int | None) -> tuple[float, str]:
        done = done or 0
        if total:
            fraction = min(1.0, done / total)
            return FETCH_BAND * fraction, f"fetching: {_mb(done)} of {_mb(total)}"
        # Unknown size: approach the end of the band without reaching it, still strictly growing.
        fraction = done / (done + UNKNOWN_SIZE_SCALE)
        return FETCH_BAND * fraction, f"fetching: {_mb(done)}"

    async def done(self) -> None:
        await self._send(100.0, "done", force=True)

    async def _send(self, value: float, message: str, *, force: bool) -> None:
        value = round(value, 1)
        if value <= self._last or (not force and value - self._last < MIN_STEP):
            return
        self._last = value
        await self._ctx.report_progress(value, 100.0, message)
