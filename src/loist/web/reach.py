"""Where an HTTP server can be reached, and what its start-up message must warn about.

``loist serve`` prints these: on a wildcard address (``--host 0.0.0.0``) the URLs other machines can
use (this host's LAN addresses), not only ``localhost``; and a warning when the public links the
server hands out (embed, stream, oEmbed: all built from ``EMBED_BASE_URL``) would point at an
address only this machine can open, or when the server is reachable from other machines with its
local-only defaults (no token, private-address fetches allowed).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from loist.config import Settings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_PROBE = ("192.0.2.1", 9)  # TEST-NET-1: a UDP "connect" picks the outgoing interface, sends nothing


def lan_addresses() -> list[str]:
    """This host's address on its default route (what a LAN peer would use), if it has one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(_PROBE)
            address = str(probe.getsockname()[0])
    except OSError:
        return []
    return [] if ipaddress.ip_address(address).is_loopback else [address]


def is_local_only(host: str) -> bool:
    """A listen address or URL host that only this machine can reach."""
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reachable_urls(settings: Settings) -> list[str]:
    """Base URLs the server answers on: ``public_base_url``, plus the LAN addresses on a wildcard bind."""
    urls = [settings.public_base_url]
    if settings.binds_all_interfaces:
        urls += [f"http://{address}:{settings.port}" for address in lan_addresses()]
    return list(dict.fromkeys(urls))


def start_warnings(settings: Settings) -> list[str]:
    """What an operator must know before others use this server."""
    warnings: list[str] = []
    public_host = urlsplit(settings.public_base_url).hostname or ""
    exposed = not is_local_only(settings.server_host)
    if exposed and is_local_only(public_host):
        example = next(iter(lan_addresses()), "<this machine's address>")
        warnings.append(
            f"EMBED_BASE_URL is not set: embed, stream and oEmbed links point at {settings.public_base_url}, "
            f"which only this machine can open; set EMBED_BASE_URL to the address others use "
            f"(e.g. http://{example}:{settings.port}, or your https URL behind a reverse proxy)"
        )
    if exposed and not settings.auth_enabled:
        warnings.append(
            f"AUTH_ENABLED=false on {settings.server_host}: anyone who can reach this port can call /mcp "
            "(add, edit and delete tracks); set AUTH_ENABLED=true and a BEARER_TOKEN"
        )
    if exposed and settings.allow_private_urls:
        warnings.append(
            "ALLOW_PRIVATE_URLS=true on a server other machines can reach: its callers can make it fetch "
            "from your private network"
        )
    return warnings
