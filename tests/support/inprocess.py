"""Helpers for running the addon in-process, through mitmproxy's own test helpers."""

from __future__ import annotations

import asyncio

from mitmproxy import http
from mitmproxy.test import tflow, tutils

from mitm_oauth.errors import TokenError
from mitm_oauth.mitm.addon import ClientCredentials
from mitm_oauth.model import Credentials
from mitm_oauth.oauth.response import Token
from mitm_oauth.secret import Secret

RULES = """
rules:
  - name: api
    match: {host: api.example.com, path: /v1}
    token_url: https://idp.example.com/token
    client_id: id
    client_secret: secret
"""


def flow(url: str = "https://api.example.com/v1/x", method: str = "GET") -> http.HTTPFlow:
    """A request as a client sends it through the proxy, with an Authorization of its own."""
    f = tflow.tflow()
    f.request = tutils.treq()
    f.request.url = url
    f.request.method = method
    f.client_conn.sni = f.request.host
    f.request.headers["Authorization"] = "Basic client-own"
    return f


class Endpoint:
    """A token fetcher that counts its calls and issues tok-1, tok-2, … (or raises `error`)."""

    def __init__(self, token_type: str = "Bearer", error: TokenError | None = None) -> None:
        self.token_type = token_type
        self.error = error
        self.calls: list[Credentials] = []

    async def __call__(self, creds: Credentials) -> Token:
        self.calls.append(creds)
        if self.error is not None:
            raise self.error
        return Token(Secret(f"tok-{len(self.calls)}"), self.token_type, 3600)


def run(addon: ClientCredentials, f: http.HTTPFlow) -> None:
    """Call the hook as mitmproxy does: it may answer at once, or with something to await."""

    async def hook() -> None:
        pending = addon.requestheaders(f)
        if pending is not None:
            await pending

    asyncio.run(hook())


def redacted(token: str) -> str:
    """What a flow keeps of a Bearer token once the request has been sent."""
    return f"Bearer [redacted sha256:{Secret(token).fingerprint}]"
