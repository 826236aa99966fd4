"""Replaying a request once with a fresh token, after the upstream rejected the old one."""

from __future__ import annotations

import asyncio
import ssl
import time

import httpx
from mitmproxy import http
from mitmproxy.proxy import mode_specs

from ..injection import Fields, Injection, replace_fields
from ..oauth.tls import tls_context

MAX_BODY = 32 * 1024 * 1024
"""The largest answer a replay holds in memory when mitmproxy sets no smaller limit."""
DEFAULT_DEADLINE = 30.0
"""Seconds for a whole replay, its answer's body included."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""RFC 9110 §9.2.2: sending these twice has the effect of sending them once."""
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-connection",
        "host",
        "content-length",
    }
)


def can_replay(flow: http.HTTPFlow) -> bool:
    """Idempotent, with its whole body in hand, and a response we may replace."""
    request, response = flow.request, flow.response
    return (
        request.method.upper() in IDEMPOTENT_METHODS
        and not request.stream
        and request.raw_content is not None
        and response is not None
        and not response.stream
    )


_Route = tuple[bool, str | None, str | None, str | None]
"""How a replay is sent: verify, CA file, upstream proxy, its "user:password"."""


def upstream_proxy(mode: mode_specs.ProxyMode) -> str | None:
    """The proxy that mitmproxy sends a flow of `mode` through, as a URL (upstream mode)."""
    if not isinstance(mode, mode_specs.UpstreamMode):
        return None
    host, port = mode.address
    return f"{mode.scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class ReplayRefused(Exception):
    """The replay's answer would not be held: too large, or too slow to arrive whole."""


class Replayer:
    """Sends a request again the way mitmproxy sent it: to its destination, through the
    upstream proxy if there is one, with mitmproxy's upstream trust.

    The answer is held in memory whole, so it is bounded: at most `max_body`
    bytes, all of it within `deadline` seconds; otherwise `ReplayRefused`.
    """

    def __init__(self, max_body: int = MAX_BODY, deadline: float = DEFAULT_DEADLINE) -> None:
        self.max_body = max_body
        self.deadline = deadline
        self._clients: dict[_Route, httpx.AsyncClient] = {}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def _client(
        self, verify: bool, ca_file: str | None, proxy: str | None, proxy_auth: str | None
    ) -> httpx.AsyncClient:
        key = (verify, ca_file, proxy, proxy_auth)
        if key not in self._clients:
            context = tls_context(ca_file, None) if verify else _unverified()
            via = None
            if proxy is not None:
                user, _, password = (proxy_auth or "").partition(":")
                auth = (user, password) if proxy_auth else None
                tls = context if proxy.startswith("https:") else None  # TLS to the proxy
                via = httpx.Proxy(proxy, auth=auth, ssl_context=tls)
            self._clients[key] = httpx.AsyncClient(
                trust_env=False, follow_redirects=False, verify=context, timeout=30, proxy=via
            )
        return self._clients[key]

    async def replay(
        self,
        request: http.Request,
        injection: Injection,
        *,
        verify: bool = True,
        ca_file: str | None = None,
        proxy: str | None = None,
        proxy_auth: str | None = None,
        proof: bytes | None = None,
    ) -> http.Response:
        """The upstream's answer to `request` sent again with `injection` (body not decoded).

        `proxy`: the upstream proxy's URL, `proxy_auth` its "user:password" (mitmproxy's
        `upstream_auth`), for mitmproxy's upstream mode; `proof`: a fresh DPoP proof.
        """
        fields = tuple(
            f for f in request.headers.fields if f[0].decode("latin-1").lower() not in HOP_BY_HOP
        )
        extra: Fields = () if proof is None else ((b"DPoP", proof),)
        headers = replace_fields(fields, injection.replaced, injection.fields + extra)
        client = self._client(verify, ca_file, proxy, proxy_auth)
        started = time.time()
        try:
            async with asyncio.timeout(self.deadline):
                async with client.stream(
                    request.method, request.url, headers=headers, content=request.raw_content
                ) as answer:
                    body = await self._read(answer)
        except TimeoutError:
            raise ReplayRefused(f"no whole answer within {self.deadline:g} s") from None
        response_headers = http.Headers(
            [
                (k.encode(), v.encode())
                for k, v in answer.headers.multi_items()
                if k.lower() not in HOP_BY_HOP
            ]
        )
        response_headers["Content-Length"] = str(len(body))
        return http.Response(
            http_version=b"HTTP/1.1",
            status_code=answer.status_code,
            reason=answer.reason_phrase.encode(),
            headers=response_headers,
            content=body,
            trailers=None,
            timestamp_start=started,
            timestamp_end=time.time(),
        )

    async def _read(self, answer: httpx.Response) -> bytes:
        """The answer's body as sent (not decoded), if it is no larger than `max_body`."""
        declared = answer.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body:
            raise ReplayRefused(f"the answer is larger than {self.max_body} bytes")
        body = bytearray()
        async for chunk in answer.aiter_raw():
            body += chunk
            if len(body) > self.max_body:
                raise ReplayRefused(f"the answer is larger than {self.max_body} bytes")
        return bytes(body)


def _unverified() -> ssl.SSLContext:
    """For `ssl_insecure`: TLS without checking the peer, as mitmproxy does then."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context
