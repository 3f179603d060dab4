"""Client address and allow lists: X-Forwarded-For is believed only from trusted proxies."""

from __future__ import annotations

import ipaddress

import pytest

from mamori.config import load_settings
from mamori.errors import AccessDeniedError
from mamori.identity.network import NetworkPolicy, RouteGroup, client_address

PROXY = (ipaddress.ip_network("10.0.0.0/24"),)


def test_the_direct_peer_is_the_client_without_a_trusted_proxy():
    assert str(client_address("203.0.113.9", ["198.51.100.1"], ())) == "203.0.113.9"


def test_a_spoofed_forwarded_for_from_an_untrusted_peer_is_ignored():
    assert str(client_address("203.0.113.9", ["127.0.0.1"], PROXY)) == "203.0.113.9"


def test_a_trusted_proxy_forwards_the_client_address():
    assert str(client_address("10.0.0.5", ["198.51.100.7"], PROXY)) == "198.51.100.7"


def test_the_right_most_untrusted_address_wins_over_client_written_entries():
    # The client wrote "127.0.0.1" itself; the proxy appended the address it really saw.
    got = client_address("10.0.0.5", ["127.0.0.1, 198.51.100.7"], PROXY)
    assert str(got) == "198.51.100.7"


def test_a_chain_of_trusted_proxies_is_walked_from_the_right():
    got = client_address("10.0.0.5", ["1.2.3.4, 198.51.100.7, 10.0.0.9"], PROXY)
    assert str(got) == "198.51.100.7"


def test_several_forwarded_for_headers_are_read_as_one_list():
    got = client_address("10.0.0.5", ["127.0.0.1", "198.51.100.7"], PROXY)
    assert str(got) == "198.51.100.7"


def test_garbage_forwarded_by_a_trusted_proxy_yields_no_address():
    assert client_address("10.0.0.5", ["198.51.100.7, not-an-ip"], PROXY) is None


def test_only_trusted_hops_yield_the_left_most_one():
    assert str(client_address("10.0.0.5", ["10.0.0.7, 10.0.0.8"], PROXY)) == "10.0.0.7"


def test_no_forwarded_for_from_a_trusted_proxy_is_the_proxy_itself():
    assert str(client_address("10.0.0.5", [], PROXY)) == "10.0.0.5"


def test_ports_and_ipv4_mapped_ipv6_are_normalised():
    assert str(client_address("::ffff:203.0.113.9", [], ())) == "203.0.113.9"
    assert str(client_address("10.0.0.5", ["198.51.100.7:4711"], PROXY)) == "198.51.100.7"
    assert str(client_address("10.0.0.5", ["[2001:db8::1]:443"], PROXY)) == "2001:db8::1"


def test_an_unknown_peer_yields_no_address():
    assert client_address(None, [], PROXY) is None
    assert client_address("testclient", [], PROXY) is None


def _policy(**kwargs) -> NetworkPolicy:
    return NetworkPolicy.from_settings(load_settings(**kwargs))


def test_the_default_admin_list_allows_loopback_only():
    policy = _policy()
    policy.check(RouteGroup.ADMIN, "127.0.0.1", [])
    policy.check(RouteGroup.ADMIN, "::1", [])
    with pytest.raises(AccessDeniedError) as info:
        policy.check(RouteGroup.ADMIN, "203.0.113.9", [])
    assert info.value.policy_ids == ("allow-admin",)
    assert "203.0.113.9" in str(info.value)


def test_a_spoofed_loopback_header_does_not_open_admin_routes():
    policy = _policy(trusted_proxies=("10.0.0.0/24",))
    with pytest.raises(AccessDeniedError):
        policy.check(RouteGroup.ADMIN, "203.0.113.9", ["127.0.0.1"])


def test_each_route_group_has_its_own_list():
    policy = _policy(allow_api=("198.51.100.0/24",), allow_hooks=("192.0.2.0/24",))
    policy.check(RouteGroup.API, "198.51.100.1", [])
    policy.check(RouteGroup.HOOKS, "192.0.2.1", [])
    with pytest.raises(AccessDeniedError):
        policy.check(RouteGroup.API, "192.0.2.1", [])
    with pytest.raises(AccessDeniedError):
        policy.check(RouteGroup.HOOKS, "198.51.100.1", [])


def test_an_empty_allow_list_allows_nobody():
    policy = _policy(allow_api=())
    with pytest.raises(AccessDeniedError):
        policy.check(RouteGroup.API, "127.0.0.1", [])
