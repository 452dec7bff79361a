"""The Host/Origin allow-list for /mcp, derived from EMBED_BASE_URL, ALLOWED_HOSTS and CORS_ORIGINS."""

from __future__ import annotations

from pathlib import Path

from loist.mcp.server import transport_security
from tests.mcp.conftest import make_settings


def test_public_host_from_embed_base_url_is_allowed(tmp_path: Path) -> None:
    security = transport_security(make_settings(tmp_path, embed_base_url="https://loist-abc123-ew.a.run.app"))
    assert security.enable_dns_rebinding_protection is True
    assert "loist-abc123-ew.a.run.app" in security.allowed_hosts
    assert "loist-abc123-ew.a.run.app:*" in security.allowed_hosts
    assert "https://loist-abc123-ew.a.run.app" in security.allowed_origins
    assert "127.0.0.1:*" in security.allowed_hosts  # local clients keep working
    assert "evil.example" not in security.allowed_hosts


def test_explicit_port_is_kept_exact(tmp_path: Path) -> None:
    security = transport_security(make_settings(tmp_path, embed_base_url="http://music.lan:8080"))
    assert "music.lan:8080" in security.allowed_hosts
    assert "music.lan:*" not in security.allowed_hosts
    assert "http://music.lan:8080" in security.allowed_origins


def test_allowed_hosts_and_cors_origins_extend_the_lists(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        allowed_hosts="music.example.com, https://alias.example.com",
        cors_origins="https://app.example.com/,*",
    )
    security = transport_security(settings)
    assert {"music.example.com", "music.example.com:*", "alias.example.com"} <= set(security.allowed_hosts)
    assert "https://app.example.com" in security.allowed_origins
    assert "*" not in security.allowed_origins
    assert len(security.allowed_hosts) == len(set(security.allowed_hosts))


def test_wildcard_turns_the_check_off(tmp_path: Path) -> None:
    security = transport_security(make_settings(tmp_path, allowed_hosts="*"))
    assert security.enable_dns_rebinding_protection is False
