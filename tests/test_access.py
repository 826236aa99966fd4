"""Who may use the proxy's tokens, and which destinations are the proxy itself."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest
from mitmproxy import connection
from mitmproxy.proxy import server_hooks
from mitmproxy.test import taddons, tflow

from mitm_oauth.access import (
    DEFAULT_ALLOWED_CLIENTS,
    client_address,
    is_allowed,
    is_this_machine,
    parse_networks,
)
from mitm_oauth.mitm.refusals import Refusals
from mitm_oauth.mitm.self_access import SelfAccess

DEFAULT = parse_networks(DEFAULT_ALLOWED_CLIENTS)


@pytest.mark.parametrize(
    ("peername", "allowed"),
    [
        (("127.0.0.1", 50000), True),
        (("127.9.9.9", 50000), True),
        (("::1", 50000, 0, 0), True),
        (("::ffff:127.0.0.1", 50000, 0, 0), True),  # an IPv4 client of a dual-stack socket
        (("10.0.0.5", 50000), False),
        (("::ffff:10.0.0.5", 50000, 0, 0), False),
        (("fe80::1%eth0", 50000, 0, 2), False),
        (None, False),
        (("not an address", 1), False),
    ],
)
def test_only_this_machine_is_allowed_by_default(peername, allowed):
    assert is_allowed(client_address(peername), DEFAULT) is allowed


def test_networks_are_cidr_blocks_or_addresses():
    assert parse_networks(["10.0.0.0/8", " 192.168.1.7 ", "fd00::/8"]) == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("fd00::/8"),
    )
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP network"):
        parse_networks(["10.0.0.0/33"])


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("127.1", True),
        ("2130706433", True),
        ("0x7f000001", True),
        ("0177.0.0.1", True),
        ("0.0.0.0", True),  # noqa: S104 - Linux connects to this machine
        ("0", True),
        ("::1", True),
        ("::", True),
        ("::ffff:127.0.0.1", True),
        ("localhost", True),
        ("localhost.", True),
        ("app.localhost", True),
        ("example.com", False),
        ("192.0.2.1", False),  # TEST-NET-1: no machine has it
        ("localhost.example.com", False),
        ("deadbeef", False),
    ],
)
def test_spellings_of_this_machine(host, local):
    assert is_this_machine(host) is local


def hook_data(host: str, port: int) -> server_hooks.ServerConnectionHookData:
    return server_hooks.ServerConnectionHookData(
        client=tflow.tclient_conn(), server=connection.Server(address=(host, port))
    )


def test_a_name_that_resolves_to_this_machine_is_not_connected_to():
    guard = SelfAccess(Refusals())
    with taddons.context(guard):
        guard._ports = frozenset({8081})
        own, other = hook_data("localhost", 8081), hook_data("localhost", 8082)
        asyncio.run(guard.server_connect(own))
        asyncio.run(guard.server_connect(other))
    assert own.server.error is not None
    assert "does not forward requests to itself" in own.server.error
    assert other.server.error is None
