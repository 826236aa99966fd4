"""Who may use the proxy's tokens, and which destinations are the proxy itself.

Pure functions: the mitmproxy glue decides when to ask them.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import os
import socket
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_ALLOWED_CLIENTS = ("127.0.0.0/8", "::1/128")
"""This machine only: a proxy that holds credentials is not a service for the network."""


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDR blocks (`10.0.0.0/8`, `::1/128`) or single addresses; raises ValueError."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP network such as 10.0.0.0/8") from None
    return tuple(networks)


def client_address(peername: object) -> IPAddress | None:
    """A client connection's address; an IPv4 client of a dual-stack socket as IPv4."""
    if not isinstance(peername, tuple) or not peername or not isinstance(peername[0], str):
        return None
    try:
        address = ipaddress.ip_address(peername[0].partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_allowed(address: IPAddress | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def describe(networks: tuple[Network, ...]) -> str:
    return ", ".join(str(n) for n in networks) or "none"


@functools.lru_cache(maxsize=1024)
def is_this_machine(host: str) -> bool:
    """Whether `host` (lower-case, no brackets) names this machine in a way a resolver accepts.

    Loopback and unspecified addresses (0.0.0.0 reaches this machine on
    Linux), in every notation a resolver reads (`127.1`, `2130706433`,
    `0x7f.1`, `::ffff:127.0.0.1`), and `localhost` with its subdomains.
    Other names that resolve here are caught when the proxy connects.
    """
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address: IPAddress | None = _legacy_ipv4(host)
    if address is None:
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
    return is_local_address(address)


def is_local_address(address: IPAddress) -> bool:
    """Loopback, unspecified, or assigned to one of this machine's interfaces."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback or address.is_unspecified:
        return True
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:  # only an address of this machine can be bound to
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any notation inet_aton reads (`127.1`, `0x7f000001`), else None."""
    if not host or not all(c in "0123456789abcdefx." for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def listening_ports(pid: int | str = "self") -> frozenset[int] | None:
    """The TCP ports a process listens on, from Linux's /proc; None where it cannot be read.

    For what mitmproxy does not say, such as the port mitmweb chose for `web_port=0`.
    """
    try:
        sockets = {
            target[len("socket:[") : -1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if (target := _link(f"/proc/{pid}/fd/{fd}")).startswith("socket:[")
        }
        ports = set()
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(FileNotFoundError), open(f"/proc/{pid}/net/{table}") as f:
                for line in list(f)[1:]:
                    fields = line.split()  # local address, ..., state (0A: listening), ..., inode
                    if fields[3] == "0A" and fields[9] in sockets:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    except OSError:
        return None
    return frozenset(ports)


def _link(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:  # closed meanwhile
        return ""
