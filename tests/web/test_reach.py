"""What ``loist serve`` says about where it can be reached, and what it warns about."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from loist.config import Settings
from loist.web.reach import is_local_only, lan_addresses, reachable_urls, start_warnings


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path, **values)  # type: ignore[call-arg,arg-type]


def test_a_loopback_server_has_nothing_to_warn_about(tmp_path: Path) -> None:
    settings = _settings(tmp_path, allow_private_urls=True)  # make serve: 127.0.0.1, no token
    assert reachable_urls(settings) == ["http://127.0.0.1:8080"]
    assert start_warnings(settings) == []


def test_all_interfaces_without_embed_base_url_warns_that_links_point_at_localhost(tmp_path: Path) -> None:
    settings = _settings(tmp_path, server_host="0.0.0.0", port=8123)  # noqa: S104 - the setting under test
    urls = reachable_urls(settings)
    assert urls[0] == "http://localhost:8123"
    assert urls[1:] == [f"http://{address}:8123" for address in lan_addresses()]
    assert all(not ipaddress.ip_address(address).is_loopback for address in lan_addresses())
    embed, auth = start_warnings(settings)
    assert "EMBED_BASE_URL is not set" in embed and "http://localhost:8123" in embed
    assert "AUTH_ENABLED=false" in auth


def test_a_lan_server_with_its_public_url_and_a_token_warns_about_nothing(tmp_path: Path) -> None:
    settings = _settings(tmp_path, server_host="0.0.0.0", embed_base_url="https://music.example.test",  # noqa: S104
                         auth_enabled=True, bearer_token="x" * 40)
    assert reachable_urls(settings)[0] == "https://music.example.test"
    assert start_warnings(settings) == []
    risky = _settings(tmp_path, server_host="0.0.0.0", embed_base_url="https://music.example.test",  # noqa: S104
                      auth_enabled=True, bearer_token="x" * 40, allow_private_urls=True)
    assert ["ALLOW_PRIVATE_URLS=true" in w for w in start_warnings(risky)] == [True]


def test_local_only_hosts() -> None:
    assert all(is_local_only(h) for h in ("localhost", "127.0.0.1", "127.0.0.2", "[::1]", "app.localhost"))
    assert not any(is_local_only(h) for h in ("0.0.0.0", "", "192.168.1.2", "music.example.test"))  # noqa: S104
