"""docs/mcp.md cannot drift from the server: every tool, resource and error code is documented."""

from __future__ import annotations

from pathlib import Path

from mcp import Client

from loist.errors import ErrorCode
from loist.mcp.server import create_mcp_server
from tests.mcp.conftest import make_settings
from tests.mcp.test_catalogue import _no_library

DOC = Path(__file__).resolve().parents[2] / "docs" / "mcp.md"


async def test_every_tool_and_resource_template_is_documented(tmp_path: Path) -> None:
    text = DOC.read_text(encoding="utf-8")
    async with Client(create_mcp_server(make_settings(tmp_path), _no_library())) as c:
        tools = [t.name for t in (await c.list_tools()).tools]
        templates = [t.uri_template for t in (await c.list_resource_templates()).resource_templates]
    headings = [line.removeprefix("### ").strip() for line in text.splitlines() if line.startswith("### ")]
    assert [h for h in headings if h in tools] == tools, "one section per tool, in tools/list order"
    for template in templates:
        assert f"`{template}`" in text, template


def test_every_error_code_a_tool_can_return_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    # configuration errors stop the server; NOT_READY is an HTTP answer before the MCP layer runs
    for code in set(ErrorCode) - {ErrorCode.CONFIG_INVALID, ErrorCode.NOT_READY}:
        assert f"`{code}`" in text, code
    assert "`INTERNAL`" in text
