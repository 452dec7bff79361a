"""The SSRF policy: every blocked spelling and range, and the addresses that stay allowed."""

from __future__ import annotations

import ipaddress

import pytest

from loist.errors import ErrorCode, FetchFailed, UrlNotAllowed
from loist.ingest.netguard import AddressPolicy, check_url, parse_ipv4_host, parse_url, static_resolver

STRICT = AddressPolicy()

BLOCKED_LITERALS = [
    # loopback, in every IPv4 spelling inet_aton accepts
    "http://127.0.0.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0x7f.1/",
    "http://0177.0.0.1/",
    "http://0177.0.0.01/",
    "http://127.1/",
    "http://127.0.1/",
    "http://127.0.0.1./",
    "http://[::1]/",
    # private, CGNAT, link-local, metadata
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    # unspecified, broadcast, multicast, reserved, documentation, benchmarking
    "http://0.0.0.0/",
    "http://0/",
    "http://255.255.255.255/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://240.0.0.1/",
    "http://192.0.2.10/",
    "http://198.51.100.7/",
    "http://203.0.113.9/",
    "http://198.18.0.1/",
    "http://192.0.0.8/",
    "http://[::]/",
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    # IPv6 forms that embed a blocked IPv4 address
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",
    "http://[::10.0.0.1]/",
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
    "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",  # Teredo, client 192.0.2.45
    "http://[2001:0:7f00:1::1]/",  # Teredo with server 127.0.0.1
]


@pytest.mark.parametrize("url", BLOCKED_LITERALS)
async def test_blocked_addresses_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed) as info:
        await check_url(url, STRICT)
    assert info.value.code is ErrorCode.URL_NOT_ALLOWED


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("192.168.257", "192.168.1.1"),
        ("0xA9.0xFE.0xA9.0xFE", "169.254.169.254"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_ipv4_spellings_are_parsed_like_inet_aton(host: str, expected: str) -> None:
    assert parse_ipv4_host(host) == ipaddress.IPv4Address(expected)


@pytest.mark.parametrize("host", ["1.2.3.4.5", "256.1.1.1", "0x100000000", "09.1.1.1", "1.2.3.256"])
def test_malformed_numeric_hosts_are_refused(host: str) -> None:
    with pytest.raises(UrlNotAllowed):
        parse_ipv4_host(host)


def test_names_are_not_numeric_hosts() -> None:
    assert parse_ipv4_host("example.com") is None
    assert parse_ipv4_host("1.2.3.example") is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/a.mp3",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "/relative/path.mp3",
        "",
        "http://",
        "http://user:secret@example.com/a.mp3",
        "http://exa mple.com/",
        "http://[fe80::1%25eth0]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
    ],
)
async def test_bad_schemes_and_hosts_are_refused(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        await check_url(url, STRICT, resolver=static_resolver({"example.com": ["93.184.216.34"]}))


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (["10.0.0.1"], "private"),
        (["::ffff:127.0.0.1"], "IPv4-mapped"),
        (["93.184.216.34", "127.0.0.1"], "loopback"),  # one bad answer among good ones is enough
        (["2606:4700::1111", "fd00::1"], "unique local"),
        (["169.254.169.254"], "metadata"),
    ],
)
async def test_names_resolving_to_blocked_addresses_are_refused(answer: list[str], why: str) -> None:
    resolver = static_resolver({"evil.test": answer})
    with pytest.raises(UrlNotAllowed, match=why):
        await check_url("https://evil.test/song.mp3", STRICT, resolver=resolver)


async def test_dns_failure_is_a_refusal_not_a_pass() -> None:
    with pytest.raises(FetchFailed, match="could not resolve"):
        await check_url("https://nowhere.test/a.mp3", STRICT, resolver=static_resolver({}))


async def test_empty_dns_answer_is_a_refusal() -> None:
    with pytest.raises(FetchFailed):
        await check_url("https://empty.test/a.mp3", STRICT, resolver=static_resolver({"empty.test": []}))


@pytest.mark.parametrize(
    "answer",
    [["93.184.216.34"], ["2606:4700::1111"], ["8.8.8.8", "2001:4860:4860::8888"], ["::ffff:8.8.8.8"]],
)
async def test_public_addresses_are_allowed(answer: list[str]) -> None:
    target = await check_url(
        "https://cdn.example.com:8443/a/b.mp3?x=1", STRICT, resolver=static_resolver({"cdn.example.com": answer})
    )
    assert str(target.ip) == str(ipaddress.ip_address(answer[0]))
    assert target.host == "cdn.example.com"
    assert target.port == 8443
    assert target.host_header == "cdn.example.com:8443"
    assert target.origin == ("https", "cdn.example.com", 8443)


async def test_public_literal_needs_no_resolver() -> None:
    async def no_dns(host: str, port: int) -> list[str]:
        raise AssertionError("a literal address must not be resolved")

    target = await check_url("http://8.8.8.8/x.mp3", STRICT, resolver=no_dns)
    assert str(target.ip) == "8.8.8.8"
    assert target.host_header == "8.8.8.8"


def test_allowed_networks_open_exactly_one_address() -> None:
    policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    assert policy.is_allowed(ipaddress.ip_address("127.0.0.1"))
    assert not policy.is_allowed(ipaddress.ip_address("127.0.0.2"))
    assert not policy.is_allowed(ipaddress.ip_address("10.0.0.1"))
    assert not policy.is_allowed(ipaddress.ip_address("::1"))
    # an IPv4 exception never opens the IPv6 spellings that embed it
    assert not policy.is_allowed(ipaddress.ip_address("::ffff:127.0.0.1"))


def test_allow_private_never_opens_metadata_or_multicast() -> None:
    policy = AddressPolicy(allow_private=True)
    for ok in ("10.0.0.1", "127.0.0.1", "192.168.0.10", "fd12::1", "::1", "100.64.1.1"):
        assert policy.is_allowed(ipaddress.ip_address(ok)), ok
    for bad in ("169.254.169.254", "fd00:ec2::254", "224.0.0.1", "0.0.0.0", "255.255.255.255", "::"):
        assert not policy.is_allowed(ipaddress.ip_address(bad)), bad


def test_idn_hosts_are_encoded() -> None:
    parsed = parse_url("https://bücher.example/ä.mp3")
    assert parsed.host == "xn--bcher-kva.example"
    assert parsed.port == 443
