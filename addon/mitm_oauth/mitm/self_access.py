"""Refusing requests to this mitmproxy itself: its listen addresses and its web interface.

Through the proxy, a client reaches 127.0.0.1 as the proxy does. mitmweb's API
listens there: a client could read other clients' flows, tokens in flight
among them, and change options such as `oauth_redact_flows` (CVE-2025-23217,
fixed in mitmproxy 11.1.2, which needs Python 3.12). These are refused here
whatever the mitmproxy version.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket

from mitmproxy import ctx, http
from mitmproxy.proxy import server_hooks

from ..access import is_local_address, is_this_machine, listening_ports
from ..matching.hosts import connect_host
from .annotations import annotate
from .refusals import Refusals

log = logging.getLogger(__name__)

MESSAGE = "this proxy does not forward requests to itself (its listen addresses, its web interface)"


class SelfAccess:
    """Refuses CONNECTs and requests to this mitmproxy, and connections that would reach it.

    A part of the main addon, which calls its hooks (and `refuse_if_self` from
    its `requestheaders`): see `ClientCredentials` for why.
    """

    def __init__(self, refusals: Refusals) -> None:
        self.refusals = refusals
        self._ports: frozenset[int] | None = None
        self._names: frozenset[str] = frozenset()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response is None:
            self.refuse_if_self(flow)

    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """The last check, on what the name resolves to: `localtest.me` is 127.0.0.1 too."""
        server = data.server
        if server.error or not server.address or server.address[1] not in self.ports():
            return
        if server.address == ("127.0.0.1", self.refusals.port):
            return  # a refused request on its way to be answered
        host, port = server.address[:2]
        try:
            found = await asyncio.get_running_loop().getaddrinfo(host, port)
        except OSError:
            return  # mitmproxy's own attempt will fail the same way
        addresses = {ipaddress.ip_address(str(a[0]).partition("%")[0]) for *_, a in found}
        if any(is_local_address(address) for address in addresses):
            server.error = MESSAGE

    def refuse_if_self(self, flow: http.HTTPFlow) -> bool:
        """Answer `flow` with 403 if it goes to this mitmproxy; whether it did."""
        request = flow.request
        if request.port not in self.ports() or not self.names_this_proxy(request.host):
            return False
        annotate(flow, {"action": "refused", "error": "proxy_self_access"}, f"403: {MESSAGE}")
        flow.marked = ":warning:"
        self.refusals.refuse(flow, 403, {"error": "proxy_self_access", "message": MESSAGE})
        return True

    def names_this_proxy(self, host: str) -> bool:
        """`host` as the request gives it, and as it will be resolved (`127.1` is 127.0.0.1)."""
        spellings = {host.lower().strip("[]")}
        with contextlib.suppress(ValueError):
            spellings.add(connect_host(host))
        return any(name in self._names or is_this_machine(name) for name in spellings)

    def ports(self) -> frozenset[int]:
        """The ports this mitmproxy listens on, its web interface's included, as last read."""
        if self._ports is None:
            self.refresh()
            assert self._ports is not None
        return self._ports

    def refresh(self) -> None:
        """Read the proxy's own addresses again: listen options may change while it runs.

        The main addon calls this every second, so that requests need not.
        """
        ports, self._names = _own_addresses()
        if self.refusals.port is not None:
            ports |= {self.refusals.port}
        self._ports = ports


def _own_addresses() -> tuple[frozenset[int], frozenset[str]]:
    ports, names = set(), {socket.gethostname().lower()}
    proxyserver = ctx.master.addons.get("proxyserver")
    if proxyserver is not None:
        for host, port, *_ in proxyserver.listen_addrs():
            ports.add(port)
            names.add(host.lower())
    if "web_port" in ctx.options:
        names.add(ctx.options.web_host.lower())
        if ctx.options.web_port:
            ports.add(ctx.options.web_port)
        else:  # mitmweb chose its port and does not say which: every port of ours counts
            ports |= _listening_ports()
    names.discard("")
    return frozenset(ports), frozenset(names)


def _listening_ports() -> frozenset[int]:
    ports = listening_ports()
    if ports is None:
        _warn_once(
            "mitmweb listens on a port it chose (web_port 0), which cannot be learnt here: "
            "requests to it through the proxy are not refused; set web_port"
        )
    return ports or frozenset()


@functools.cache
def _warn_once(message: str) -> None:
    log.warning("%s", message)
