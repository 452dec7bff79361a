"""``loist serve`` options (``loist.cli.server``); the running server is tested in tests/e2e."""

from __future__ import annotations

import json

from loist.errors import EXIT_CODE, ErrorCode
from tests.cli.conftest import run


def test_serve_refuses_an_unknown_transport_before_serving() -> None:
    code, out, _ = run("serve", "--transport", "carrier-pigeon", "--json")
    assert code == EXIT_CODE[ErrorCode.CONFIG_INVALID]
    error = json.loads(out)["error"]
    assert error["code"] == "CONFIG_INVALID" and "server_transport" in error["message"]
