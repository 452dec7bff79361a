"""Which URLs the server may fetch: the SSRF policy.

A URL given by a caller is fetched by the server, from inside its network. Without a policy that
is a way to reach the cloud metadata service, the database or anything else on the private
network. The rules here are deliberately strict:

* only ``http`` and ``https``; no credentials in the URL;
* the host is parsed the way browsers and ``inet_aton`` do, so ``http://2130706433/``,
  ``http://0x7f.1/``, ``http://0177.0.0.1/`` and ``http://127.1/`` are all recognised as
  127.0.0.1 (and refused), instead of being handed to a resolver that might read them that way;
* a name is resolved ONCE and every address it resolves to must be allowed; a failed resolution
  is a refusal, never "allowed"; the caller then connects to the checked address (see
  :mod:`loist.ingest.fetch`), so a second, different DNS answer cannot be used (DNS rebinding);
* IPv6 forms that embed an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, NAT64, Teredo) are
  judged by the IPv4 address they embed.

:class:`AddressPolicy` can open exactly the networks a test (or a laptop profile) needs, e.g.
``127.0.0.1/32`` for a loopback test server, while every other private address stays blocked.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import urlsplit

import anyio

from loist.errors import FetchFailed, UrlNotAllowed

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

# How an operator opens the private ranges, said with every refusal that setting would lift.
PRIVATE_HINT = (
    "the server fetches only public addresses unless ALLOW_PRIVATE_URLS=true "
    "(set it only when everyone who can call the server may reach this network)"
)

#: ``async def resolver(host, port) -> [address strings]``; injectable so tests control DNS.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

ALLOWED_SCHEMES = ("http", "https")
DEFAULT_PORTS = {"http": 80, "https": 443}

#: Names refused before any resolution (cloud metadata endpoints reachable by name).
BLOCKED_HOSTNAMES = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)


class _Kind(Enum):
    PRIVATE = "private"  # opened by AddressPolicy(allow_private=True)
    NEVER = "never"  # never a valid fetch target, whatever the policy says
    EMBEDS_IPV4 = "embeds"  # judged by the embedded IPv4 address


def _n(text: str) -> IPNetwork:
    return ipaddress.ip_network(text)


# Order matters: the first matching network decides (more specific entries first).
_IPV4_TABLE: tuple[tuple[IPNetwork, _Kind, str], ...] = (
    (_n("169.254.169.254/32"), _Kind.NEVER, "cloud metadata service"),
    (_n("0.0.0.0/8"), _Kind.NEVER, "unspecified / 'this network'"),
    (_n("10.0.0.0/8"), _Kind.PRIVATE, "private network"),
    (_n("100.64.0.0/10"), _Kind.PRIVATE, "carrier-grade NAT"),
    (_n("127.0.0.0/8"), _Kind.PRIVATE, "loopback"),
    (_n("169.254.0.0/16"), _Kind.PRIVATE, "link-local"),
    (_n("172.16.0.0/12"), _Kind.PRIVATE, "private network"),
    (_n("192.0.0.0/24"), _Kind.NEVER, "IETF protocol assignments"),
    (_n("192.0.2.0/24"), _Kind.NEVER, "documentation range"),
    (_n("192.88.99.0/24"), _Kind.NEVER, "6to4 relay anycast"),
    (_n("192.168.0.0/16"), _Kind.PRIVATE, "private network"),
    (_n("198.18.0.0/15"), _Kind.NEVER, "benchmarking range"),
    (_n("198.51.100.0/24"), _Kind.NEVER, "documentation range"),
    (_n("203.0.113.0/24"), _Kind.NEVER, "documentation range"),
    (_n("224.0.0.0/4"), _Kind.NEVER, "multicast"),
    (_n("255.255.255.255/32"), _Kind.NEVER, "broadcast"),
    (_n("240.0.0.0/4"), _Kind.NEVER, "reserved"),
)

_IPV6_TABLE: tuple[tuple[IPNetwork, _Kind, str], ...] = (
    (_n("::/128"), _Kind.NEVER, "unspecified"),
    (_n("::1/128"), _Kind.PRIVATE, "loopback"),
    (_n("::ffff:0:0/96"), _Kind.EMBEDS_IPV4, "IPv4-mapped"),
    (_n("::/96"), _Kind.EMBEDS_IPV4, "IPv4-compatible"),
    (_n("64:ff9b::/96"), _Kind.EMBEDS_IPV4, "NAT64"),
    (_n("64:ff9b:1::/48"), _Kind.PRIVATE, "local-use NAT64"),
    (_n("100::/64"), _Kind.NEVER, "discard-only"),
    (_n("2001::/32"), _Kind.EMBEDS_IPV4, "Teredo"),
    (_n("2001:db8::/32"), _Kind.NEVER, "documentation range"),
    (_n("2001::/23"), _Kind.NEVER, "IETF protocol assignments"),
    (_n("2002::/16"), _Kind.EMBEDS_IPV4, "6to4"),
    (_n("3fff::/20"), _Kind.NEVER, "documentation range"),
    (_n("fd00:ec2::254/128"), _Kind.NEVER, "cloud metadata service"),
    (_n("fc00::/7"), _Kind.PRIVATE, "unique local address"),
    (_n("fe80::/10"), _Kind.PRIVATE, "link-local"),
    (_n("fec0::/10"), _Kind.PRIVATE, "site-local"),
    (_n("ff00::/8"), _Kind.NEVER, "multicast"),
)


def _embedded_ipv4(ip: IPv6Address, reason: str) -> list[IPv4Address]:
    """The IPv4 address(es) an IPv6 transition form carries."""
    packed = ip.packed
    if reason == "6to4":
        return [IPv4Address(packed[2:6])]
    if reason == "Teredo":
        server, client = ip.teredo or (IPv4Address(packed[4:8]), IPv4Address(bytes(b ^ 0xFF for b in packed[12:16])))
        return [server, client]
    return [IPv4Address(packed[12:16])]  # mapped, compatible, NAT64: the low 32 bits


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses may be fetched.

    ``allowed_networks`` are exact exceptions, matched against the address actually connected to
    (an IPv4 network never matches an IPv6 form that embeds it: ``::ffff:127.0.0.1`` stays blocked
    when only ``127.0.0.1/32`` is allowed). ``allow_private`` opens private, loopback, link-local,
    CGNAT and unique-local ranges, never metadata, multicast, broadcast or unspecified addresses.
    """

    allow_private: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` may not be fetched, or None when it may."""
        for net in self.allowed_networks:
            if ip.version == net.version and ip in net:
                return None
        return self._refusal(ip)

    def _refusal(self, ip: IPAddress) -> str | None:
        table = _IPV4_TABLE if ip.version == 4 else _IPV6_TABLE
        for net, kind, reason in table:
            if ip not in net:
                continue
            if kind is _Kind.EMBEDS_IPV4:
                assert isinstance(ip, IPv6Address)
                for inner in _embedded_ipv4(ip, reason):
                    why = self._refusal(inner)
                    if why is not None:
                        return f"{reason} address embedding {inner} ({why})"
                return None
            if kind is _Kind.PRIVATE and self.allow_private:
                return None
            return reason
        if not ip.is_global:
            return "reserved address"
        return None

    def is_allowed(self, ip: IPAddress) -> bool:
        return self.refusal(ip) is None

    def check_ip(self, ip: IPAddress, *, host: str | None = None) -> None:
        why = self.refusal(ip)
        if why is not None:
            shown = f"{host} ({ip})" if host and host != str(ip) else str(ip)
            if not self.allow_private and AddressPolicy(True, self.allowed_networks).is_allowed(ip):
                why += f"; {PRIVATE_HINT}"
            raise UrlNotAllowed(f"refusing to fetch from {shown}: {why}", details={"address": str(ip)})


@dataclass(frozen=True)
class Target:
    """A URL that passed the policy, with the one address to connect to."""

    url: str
    scheme: str
    host: str  # as written in the URL (lower-case, IDNA-encoded); the Host header and TLS name
    port: int
    ip: IPAddress
    addresses: tuple[IPAddress, ...]

    @property
    def origin(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"


_NUMERIC_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$", re.IGNORECASE)


def parse_ipv4_host(host: str) -> IPv4Address | None:
    """Parse every IPv4 spelling ``inet_aton`` and browsers accept (1-4 parts, dec/oct/hex).

    Returns None when the host is not numeric (a name). Raises UrlNotAllowed for a host that looks
    numeric but is not a valid address (e.g. ``1.2.3.4.5`` or ``0x1.99999999999``): such a host is
    never sent to a resolver, which might read it differently.
    """
    parts = host.split(".")
    if not parts or not _NUMERIC_PART.match(parts[-1]):
        return None  # WHATWG: the host is an IPv4 address iff its last label is numeric
    if len(parts) > 4 or not all(_NUMERIC_PART.match(p) for p in parts):
        raise UrlNotAllowed(f"malformed numeric host {host!r}")
    values: list[int] = []
    for part in parts:
        low = part.lower()
        if low.startswith("0x"):
            values.append(int(low[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not all(c in "01234567" for c in part):
                raise UrlNotAllowed(f"malformed numeric host {host!r}")
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise UrlNotAllowed(f"malformed numeric host {host!r}")
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return IPv4Address(number)


def parse_host(host: str) -> IPAddress | None:
    """The address a URL host spells, or None when it is a name to resolve."""
    if ":" in host:
        if "%" in host:
            raise UrlNotAllowed("IPv6 zone identifiers are not allowed")
        try:
            return IPv6Address(host)
        except ValueError:
            raise UrlNotAllowed(f"malformed IPv6 host {host!r}") from None
    return parse_ipv4_host(host)


@dataclass(frozen=True)
class ParsedUrl:
    url: str
    scheme: str
    host: str
    port: int
    literal: IPAddress | None


def parse_url(url: str) -> ParsedUrl:
    """Split and validate a URL's scheme and host (no network access)."""
    if not isinstance(url, str) or not url.strip():
        raise UrlNotAllowed("empty URL")
    url = url.strip()
    if any(ord(c) < 0x21 for c in url):
        raise UrlNotAllowed("URL contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlNotAllowed(f"malformed URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise UrlNotAllowed(f"only http and https URLs can be fetched, not {scheme or 'a relative URL'!r}")
    if parts.username is not None or parts.password is not None:
        raise UrlNotAllowed("credentials in the URL are not allowed; pass an Authorization header instead")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UrlNotAllowed("URL has no host")
    if "\\" in host or "/" in host:
        raise UrlNotAllowed(f"malformed host {host!r}")
    literal = parse_host(host)
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise UrlNotAllowed(f"malformed host name {host!r}") from None
        if host in BLOCKED_HOSTNAMES:
            raise UrlNotAllowed(f"refusing to fetch from {host}: cloud metadata service")
    else:
        host = str(literal)
    return ParsedUrl(url=url, scheme=scheme, host=host, port=port or DEFAULT_PORTS[scheme], literal=literal)


async def system_resolver(host: str, port: int) -> list[str]:
    """getaddrinfo in a worker thread (it blocks)."""
    infos = await anyio.to_thread.run_sync(
        lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    )
    return [str(info[4][0]) for info in infos]


def static_resolver(mapping: dict[str, Sequence[str]]) -> Resolver:
    """A resolver answering from a table (tests); unknown names fail like NXDOMAIN."""

    async def resolve(host: str, port: int) -> list[str]:
        try:
            return list(mapping[host])
        except KeyError:
            raise OSError(socket.EAI_NONAME, f"unknown host {host}") from None

    return resolve


async def check_url(url: str, policy: AddressPolicy, *, resolver: Resolver | None = None) -> Target:
    """Validate ``url`` and resolve its host once; every resolved address must be allowed."""
    parsed = parse_url(url)
    if parsed.literal is not None:
        policy.check_ip(parsed.literal)
        addresses: tuple[IPAddress, ...] = (parsed.literal,)
    else:
        try:
            raw = await (resolver or system_resolver)(parsed.host, parsed.port)
        except (OSError, UnicodeError) as exc:
            raise FetchFailed(f"could not resolve {parsed.host}: {exc}", details={"host": parsed.host}) from None
        found: list[IPAddress] = []
        for text in raw:
            try:
                ip = ipaddress.ip_address(text.split("%", 1)[0])
            except ValueError:
                raise UrlNotAllowed(f"{parsed.host} resolved to a malformed address {text!r}") from None
            if ip not in found:
                found.append(ip)
        if not found:
            raise FetchFailed(f"could not resolve {parsed.host}: no addresses", details={"host": parsed.host})
        for ip in found:
            policy.check_ip(ip, host=parsed.host)
        addresses = tuple(found)
    return Target(
        url=parsed.url, scheme=parsed.scheme, host=parsed.host, port=parsed.port, ip=addresses[0], addresses=addresses
    )
