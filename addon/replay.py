"""Replaying a request once with a fresh token, after the upstream rejected the old one."""

from __future__ import annotations

import time

import httpx
from mitmproxy import http

from addon.client_tls import tls_context
from addon.injection import Injection, replace_fields

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""RFC 9110 §9.2.2: sending these twice has the effect of sending them once."""
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "transfer-encoding", "upgrade", "proxy-connection", "host", "content-length",
    }
)  # fmt: skip


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


class Replayer:
    """Sends a request again, straight to its destination, with mitmproxy's upstream trust."""

    def __init__(self) -> None:
        self._clients: dict[tuple[bool, str | None], httpx.AsyncClient] = {}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def _client(self, verify: bool, ca_file: str | None) -> httpx.AsyncClient:
        key = (verify, ca_file)
        if key not in self._clients:
            context = tls_context(ca_file, None) if verify else False
            self._clients[key] = httpx.AsyncClient(
                trust_env=False, follow_redirects=False, verify=context, timeout=30
            )
        return self._clients[key]

    async def replay(
        self,
        request: http.Request,
        injection: Injection,
        *,
        verify: bool = True,
        ca_file: str | None = None,
    ) -> http.Response:
        """The upstream's answer to `request` sent again with `injection` (body not decoded)."""
        fields = tuple(
            f for f in request.headers.fields if f[0].decode("latin-1").lower() not in HOP_BY_HOP
        )
        headers = replace_fields(fields, injection.replaced, injection.fields)
        client = self._client(verify, ca_file)
        started = time.time()
        async with client.stream(
            request.method, request.url, headers=headers, content=request.raw_content
        ) as answer:
            body = b"".join([chunk async for chunk in answer.aiter_raw()])
        response_headers = http.Headers(
            [(k.encode(), v.encode()) for k, v in answer.headers.multi_items()
             if k.lower() not in HOP_BY_HOP]
        )  # fmt: skip
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
