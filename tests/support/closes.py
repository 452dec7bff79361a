"""Which libraries were closed during a test: a recording hook on the real ``Library.close``.

The library keeps no "closed" flag (an engine can be used again after ``dispose``), so tests that
prove an opener closes what it opened, and only that, record the calls instead.
"""

from __future__ import annotations

import pytest

from loist.library.service import Library


def record_closes(monkeypatch: pytest.MonkeyPatch) -> list[Library]:
    """Every library closed from now on, in order; closing still happens for real."""
    seen: list[Library] = []
    real_close = Library.close

    async def recording_close(self: Library) -> None:
        seen.append(self)
        await real_close(self)

    monkeypatch.setattr(Library, "close", recording_close)
    return seen
