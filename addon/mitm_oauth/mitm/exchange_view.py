"""Token exchanges shown as flows in mitmweb's and the console's flow list, secrets cut out."""

from __future__ import annotations

from urllib.parse import urlsplit

import mitmproxy.flow
from mitmproxy import connection, ctx, http

from ..matching.hosts import default_port
from ..model import Credentials
from ..oauth.cache import TokenCache
from ..observe.exchange import Exchange
from .annotations import METADATA

EXCHANGE = "oauth_exchange"
"""Marks the flows that show token exchanges: they are never proxied or matched."""


class ExchangeView:
    """Puts each token exchange in the flow list, as `oauth_show_exchanges` says.

    The token client's observer; the cache names the rules an exchange was for.
    """

    def __init__(self, cache: TokenCache) -> None:
        self.cache = cache

    def show(self, creds: Credentials, exchange: Exchange) -> None:
        """Put a token exchange in the flow list, where the view (mitmweb, console) exists."""
        setting = ctx.options.oauth_show_exchanges
        view = ctx.master.addons.get("view")  # mitmweb's and the console's flow list
        if setting == "off" or view is None or (setting == "auto" and _is_mitmdump()):
            return
        rules = self.cache.credential_sets().get(creds, ())
        view.add([exchange_flow(exchange, rules)])


def exchange_flow(exchange: Exchange, rules: tuple[str, ...]) -> http.HTTPFlow:
    """A flow that shows a token exchange; it is never sent anywhere."""
    parts = urlsplit(exchange.url)
    port = parts.port or default_port(parts.scheme)
    client = connection.Client(
        peername=("127.0.0.1", 0), sockname=("127.0.0.1", 0), timestamp_start=exchange.started
    )
    server = connection.Server(address=(parts.hostname or "", port))
    flow = http.HTTPFlow(client, server)
    path = (parts.path or "/").encode() + (b"?" + parts.query.encode() if parts.query else b"")
    flow.request = http.Request(
        host=parts.hostname or "",
        port=port,
        method=b"POST",
        scheme=parts.scheme.encode(),
        authority=b"",
        path=path,
        http_version=b"HTTP/1.1",
        headers=http.Headers(_encoded(exchange.request_headers)),
        content=exchange.request_body,
        trailers=None,
        timestamp_start=exchange.started,
        timestamp_end=exchange.started,
    )
    if exchange.status is not None:
        flow.response = http.Response(
            http_version=b"HTTP/1.1",
            status_code=exchange.status,
            reason=exchange.reason.encode(),
            headers=http.Headers(_encoded(exchange.response_headers)),
            content=exchange.response_body,
            trailers=None,
            timestamp_start=exchange.ended,
            timestamp_end=exchange.ended,
        )
    else:
        flow.error = mitmproxy.flow.Error(exchange.error or "no answer", exchange.ended)
    flow.metadata[EXCHANGE] = True
    flow.metadata[METADATA] = {
        "action": "token_exchange",
        "rules": list(rules),
        "status": exchange.status,
        "error": exchange.error,
    }
    answer = f"HTTP {exchange.status}" if exchange.status is not None else exchange.error
    flow.comment = f"oauth: token exchange for rule {', '.join(rules) or '?'}: {answer}"
    flow.marked = ":key:"
    return flow


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode("utf-8", "replace")) for k, v in headers]


def _is_mitmdump() -> bool:
    return type(ctx.master).__name__ == "DumpMaster"
