"""A refusal that ALLOW_PRIVATE_URLS would lift says so; one it would not lift does not pretend it would."""

from __future__ import annotations

import ipaddress

import pytest

from loist.errors import UrlNotAllowed
from loist.ingest.netguard import AddressPolicy


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.1.20", "::1", "fd00::1"])
def test_private_refusals_name_the_setting_that_lifts_them(address: str) -> None:
    with pytest.raises(UrlNotAllowed) as caught:
        AddressPolicy().check_ip(ipaddress.ip_address(address))
    assert "ALLOW_PRIVATE_URLS=true" in str(caught.value)


@pytest.mark.parametrize("address", ["169.254.169.254", "0.0.0.0", "224.0.0.1"])  # noqa: S104 - an address under test
def test_refusals_the_setting_cannot_lift_do_not_mention_it(address: str) -> None:
    for policy in (AddressPolicy(), AddressPolicy(allow_private=True)):
        with pytest.raises(UrlNotAllowed) as caught:
            policy.check_ip(ipaddress.ip_address(address))
        assert "ALLOW_PRIVATE_URLS" not in str(caught.value)
