"""Answering a request in place of its upstream, even when mitmproxy streams its body.

mitmproxy answers a request for an addon that sets `flow.response`, unless it
streams the request's body (`stream_large_bodies`): then the response cannot
be set ("Can't set a response and enable streaming at the same time"), at the
request's headers or later. Such a request is sent to a loopback endpoint of
this addon instead, which reads the body and answers with the refusal. Either
way the upstream never sees the request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hmac
import json
import logging
import secrets
from collections.abc import Iterable, Mapping

import h11
from mitmproxy import connection, ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.net.http.http1 import expected_http_body_size
from mitmproxy.utils import human

log = logging.getLogger(__name__)

CARRIER = "X-Oauth-Refusal"
"""The header that carries a diverted request's answer to the loopback endpoint."""
_DIVERTED = "oauth_diverted"
"""`flow.metadata` key: where a diverted request was going, to show it again afterwards."""
MAX_HEAD = 1 << 20
"""The longest request head the endpoint reads: mitmproxy passes the client's headers on."""


class Refusals:
    """Answers refused requests with a status and a JSON body; nothing reaches the upstream.

    A part of the main addon, which calls its hooks: see `ClientCredentials` for why.
    """

    def __init__(self) -> None:
        self._key = secrets.token_urlsafe(18)
        """Carried by every diverted request: the endpoint answers nobody else."""
        self._server: asyncio.Server | None = None
        self._starting: asyncio.Task[None] | None = None
        self.port: int | None = None
        """The loopback endpoint's port, once it listens."""

    def load(self, loader: Loader) -> None:
        """Start listening at once: mitmproxy opens its own listeners before `running`."""
        with contextlib.suppress(RuntimeError):  # no event loop yet: `running` starts it
            self._starting = asyncio.get_running_loop().create_task(self.listen())

    def running(self) -> None:
        if self._starting is None:
            self._starting = asyncio.get_running_loop().create_task(self.listen())

    async def listen(self) -> None:
        if self._server is None:
            answer = functools.partial(_answer, self._key)
            self._server = await asyncio.start_server(answer, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]

    def done(self) -> None:
        if self._starting is not None:
            self._starting.cancel()
        if self._server is not None:
            self._server.close()
        self._server = self._starting = self.port = None

    def refuse(self, flow: http.HTTPFlow, status: int, body: Mapping[str, object]) -> None:
        """Answer `flow` with `status` and `body` (JSON) instead of sending it on."""
        content = json.dumps(body)
        if not _streamed(flow):
            flow.request.stream = False
            flow.response = http.Response.make(
                status, content, {"Content-Type": "application/json"}
            )
        elif self.port is not None:
            self._divert(flow, status, content, self.port)
        else:  # no endpoint to answer it: the request must still not go upstream
            flow.kill()

    def _divert(self, flow: http.HTTPFlow, status: int, content: str, port: int) -> None:
        request = flow.request
        data = request.data
        flow.metadata[_DIVERTED] = (data.scheme, data.host, data.port)
        data.scheme, data.host, data.port = b"http", "127.0.0.1", port
        # A new server connection: not the tunnel's, not through an upstream proxy.
        flow.server_conn = connection.Server(address=("127.0.0.1", port))
        carried = base64.urlsafe_b64encode(content.encode()).decode()
        request.headers[CARRIER] = f"{self._key} {status} {carried}"

    def diverted(self, flow: http.HTTPFlow) -> bool:
        """Whether `flow` is on its way to the refusal endpoint."""
        return _DIVERTED in flow.metadata

    def restore(self, flow: http.HTTPFlow) -> None:
        """Show a diverted request as the client sent it, once its answer is in."""
        destination = flow.metadata.pop(_DIVERTED, None)
        if destination is not None:
            data = flow.request.data
            data.scheme, data.host, data.port = destination
            flow.request.headers.pop(CARRIER, None)


def _streamed(flow: http.HTTPFlow) -> bool:
    """Whether mitmproxy streams, or may yet stream, this request's body."""
    request = flow.request
    if request.stream:
        return True
    limit = human.parse_size(getattr(ctx.options, "stream_large_bodies", None))
    if limit is None or request.method.upper() == "CONNECT":
        return False
    try:
        size = expected_http_body_size(request)
    except ValueError:
        return True
    if request.is_http2 or request.is_http3:  # no framing headers needed: size unknown
        size = size or None
    return size is None or size < 0 or size > limit


async def _answer(key: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Serve one connection from mitmproxy: read each request whole, answer what it carries.

    A request without this process's `key` is not from mitmproxy: the connection is closed.
    """
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    answer: tuple[int, bytes] = (502, b"{}")
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))  # b"" at the end: ConnectionClosed
            elif isinstance(event, h11.Request):
                carried = _carried(key, event.headers)
                if carried is None:
                    return
                answer = carried
            elif isinstance(event, h11.EndOfMessage):
                status, body = answer
                headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
                for part in (
                    h11.Response(status_code=status, headers=headers),
                    h11.Data(data=body),
                    h11.EndOfMessage(),
                ):
                    writer.write(conn.send(part) or b"")
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return
    except (h11.ProtocolError, OSError) as e:
        log.debug("refusal endpoint: %s", e)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def _carried(key: str, headers: Iterable[tuple[bytes, bytes]]) -> tuple[int, bytes] | None:
    """The status and body a diverted request carries; None without the key."""
    for name, value in headers:
        if name.lower() == CARRIER.lower().encode():
            given, _, rest = value.partition(b" ")
            status, _, carried = rest.partition(b" ")
            if hmac.compare_digest(given, key.encode()):
                with contextlib.suppress(ValueError):
                    return int(status), base64.urlsafe_b64decode(carried)
    return None
