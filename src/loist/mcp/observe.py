"""Counting and timing MCP tool calls (``loist_mcp_tool_calls_total``, ``loist_mcp_tool_duration_seconds``).

The outcome is ``ok`` or the stable error code of the call's ``isError`` result (the one mapping
of failures, :func:`loist.mcp.results.error_result`, puts it in ``structuredContent.error.code``).
A name that is not a registered tool is counted as ``unknown``, so clients cannot grow the label
set. The SDK opens the trace span of each call itself (one per JSON-RPC message).
"""

from __future__ import annotations

from typing import Any

from loist.errors import ErrorCode
from loist.telemetry import metrics

CODES = frozenset(str(code) for code in ErrorCode)


def outcome(result: Any) -> str:
    """``ok``, or the error code an ``isError`` result carries (``INTERNAL`` if it carries none)."""
    if not getattr(result, "is_error", False):
        return metrics.OK
    structured = getattr(result, "structured_content", None) or {}
    error = structured.get("error") if isinstance(structured, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if code in CODES else str(ErrorCode.INTERNAL)


def record(tools: frozenset[str], name: str, result: Any, seconds: float) -> None:
    """Count one finished call (``result`` None: it raised)."""
    label = name if name in tools else metrics.UNKNOWN_TOOL
    metrics.tool_call(label, outcome(result) if result is not None else str(ErrorCode.INTERNAL), seconds)
