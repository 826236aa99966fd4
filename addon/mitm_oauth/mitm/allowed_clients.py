"""Which clients may have requests that get a token: this machine's, unless told otherwise.

mitmdump listens on every interface unless `--listen-host` says otherwise;
without this, anyone who can reach the machine would call every API in the
rules with the rules' credentials.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import mode_specs

from ..access import (
    DEFAULT_ALLOWED_CLIENTS,
    Network,
    client_address,
    describe,
    is_allowed,
    parse_networks,
)
from ..matching.hosts import is_loopback

log = logging.getLogger(__name__)

NO_AUTHENTICATION = (None, "", "any")
"""proxyauth values that let anyone in: `any` accepts any name and password."""
NOT_LISTENING = frozenset({"local", "wireguard", "tun", "dns"})
"""Modes whose clients are this machine's, hold a WireGuard key, or send no HTTP."""
REMEMBERED = 4096
"""Client addresses whose verdict is remembered (it starts afresh when full)."""


class AllowedClients:
    """oauth_allowed_clients, and the warning when the proxy listens beyond this machine.

    A part of the main addon, which calls its hooks: see `ClientCredentials` for why.
    """

    def __init__(self) -> None:
        self.networks: tuple[Network, ...] = parse_networks(DEFAULT_ALLOWED_CLIENTS)
        self._verdicts: dict[str | None, bool] = {}
        self._warned: str | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "oauth_allowed_clients",
            Sequence[str],
            list(DEFAULT_ALLOWED_CLIENTS),
            "Client networks (CIDR) whose requests may get a token; others are refused with "
            "403. Requests that passed mitmproxy's proxyauth may get one from anywhere.",
        )

    def configure(self, updated: set[str]) -> None:
        if "oauth_allowed_clients" in updated:
            try:
                self.networks = parse_networks(ctx.options.oauth_allowed_clients)
            except ValueError as e:
                raise exceptions.OptionsError(f"oauth_allowed_clients: {e}") from None
            self._verdicts = {}
        warning = exposure_warning(self.networks)
        if warning is not None and warning != self._warned:
            log.warning("%s", warning)
        self._warned = warning

    def may_use(self, flow: http.HTTPFlow) -> bool:
        """Whether the client's address is allowed, or it passed mitmproxy's proxyauth."""
        peername = flow.client_conn.peername
        key = peername[0] if peername else None
        allowed = self._verdicts.get(key)
        if allowed is None:
            if len(self._verdicts) >= REMEMBERED:
                self._verdicts.clear()
            allowed = self._verdicts[key] = is_allowed(client_address(peername), self.networks)
        return allowed or _authenticated(flow)


def _authenticated(flow: http.HTTPFlow) -> bool:
    """Whether the request passed mitmproxy's proxyauth, which notes the user in the flow."""
    return (
        "proxyauth" in flow.metadata
        and getattr(ctx.options, "proxyauth", None) not in NO_AUTHENTICATION
    )


def exposure_warning(allowed: tuple[Network, ...]) -> str | None:
    """What to tell the operator when mitmproxy listens beyond loopback without proxyauth."""
    proxyauth = getattr(ctx.options, "proxyauth", None)
    if "mode" not in ctx.options or proxyauth not in NO_AUTHENTICATION:
        return None
    wide = []
    for spec in ctx.options.mode:
        try:
            mode = mode_specs.ProxyMode.parse(spec)
        except ValueError:
            continue  # mitmproxy itself refuses it
        port = mode.listen_port(ctx.options.listen_port)
        if mode.type_name in NOT_LISTENING or port is None:
            continue
        host = mode.listen_host(ctx.options.listen_host)
        if not is_loopback(host):
            wide.append(f"{host or '*'}:{port}")
    if not wide:
        return None
    return (
        f"mitmproxy listens beyond this machine ({', '.join(wide)}) without proxyauth: only "
        f"clients in oauth_allowed_clients ({describe(allowed)}) get tokens; "
        "listen on 127.0.0.1 (--listen-host 127.0.0.1) or set proxyauth"
    )
