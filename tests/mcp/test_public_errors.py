"""Internal failures never reach MCP-over-HTTP callers: a database failure's message names the
deployment (a database URL with user, host and port), so over HTTP the caller gets the code and
generic words, and the real message goes to the server log. Over stdio (the user's own machine)
the message stays whole. Errors about the caller's own request keep their message everywhere.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from loist.config import Settings
from loist.errors import PUBLIC_MESSAGE, DatabaseFailed, ErrorCode, NotFound
from loist.mcp.results import error_result
from loist.mcp.server import create_mcp_server

LEAKY = "database query failed on postgresql+asyncpg://loist:********@10.8.0.3:5432/loist_mvp_production: ConnectionRefusedError"
TRACK = "00000000-0000-4000-8000-000000000000"


class BrokenLibrary:
    """A library whose catalog is down (the real one raises exactly this on a dead database)."""

    def __getattr__(self, name: str) -> Any:
        async def fail(*args: Any, **kwargs: Any) -> Any:
            raise DatabaseFailed(LEAKY, details={"retryable": True})

        return fail


def test_error_result_hides_deployment_failures_only_in_public() -> None:
    public = error_result("get_audio_metadata", DatabaseFailed(LEAKY), public=True)
    assert public.content[0].text == f"DATABASE_FAILED: {PUBLIC_MESSAGE[ErrorCode.DATABASE_FAILED]}"  # type: ignore[union-attr]
    assert public.structured_content == {"error": {"code": "DATABASE_FAILED", "message": PUBLIC_MESSAGE[ErrorCode.DATABASE_FAILED]}}
    local = error_result("get_audio_metadata", DatabaseFailed(LEAKY), public=False)
    assert LEAKY in local.content[0].text  # type: ignore[union-attr]
    caller = error_result("get_audio_metadata", NotFound(f"no track {TRACK}"), public=True)
    assert caller.structured_content["error"]["message"] == f"no track {TRACK}"  # type: ignore[index]


@pytest.mark.parametrize("transport", ["http", "stdio"])
async def test_a_dead_database_over_mcp(tmp_path, transport: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    server = create_mcp_server(settings, BrokenLibrary(), transport=transport)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="loist.mcp"):
        async with Client(server) as client:
            result = await client.call_tool("get_audio_metadata", {"audioId": TRACK})
            with pytest.raises(MCPError) as raised:
                await client.read_resource(f"music-library://audio/{TRACK}/metadata")
    text = result.content[0].text  # type: ignore[union-attr]
    assert result.is_error and text.startswith("DATABASE_FAILED: ")
    leaked = "10.8.0.3" in text or "10.8.0.3" in str(raised.value) or "10.8.0.3" in str(raised.value.error.data)
    assert leaked is (transport == "stdio")
    assert any("10.8.0.3" in r.getMessage() for r in caplog.records)  # the operator still sees it all
