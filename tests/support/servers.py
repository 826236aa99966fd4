"""Real HTTP(S) servers on loopback: an upstream API that echoes, and a token endpoint."""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs

from tests.support.certs import ServerCert


@dataclass(frozen=True)
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    client_cert: str | None = None
    """The common name of the TLS client certificate, when the server asks for one."""

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)


@dataclass
class Reply:
    status: int = 200
    body: Any = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds the server takes to answer: a slow peer, not a synchronisation."""

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Handler = Callable[[Recorded], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # load tests open hundreds of connections at once


class RecordingServer:
    """A threaded HTTP/1.1 server that records every request and answers with `handler`."""

    def __init__(
        self,
        handler: Handler,
        *,
        host: str = "127.0.0.1",
        tls: ServerCert | None = None,
        client_ca: Path | None = None,
    ):
        """`client_ca`: ask for a client certificate (optional: a TLS peer may have none);
        a certificate is then verified against this CA bundle."""
        self.handler = handler
        self.requests: list[Recorded] = []
        self._changed = threading.Condition()
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                recorded = Recorded(
                    self.command,
                    self.path,
                    list(self.headers.items()),
                    self.rfile.read(length),
                    client_cert=_common_name(self.connection),
                )
                with server._changed:
                    server.requests.append(recorded)
                    server._changed.notify_all()
                reply = server.handler(recorded)
                if reply.delay:
                    time.sleep(reply.delay)
                body = reply.encoded()
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_TRACE = _handle

        self._httpd = _Server((host, 0), _Handler)
        self.scheme = "http"
        if tls is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(tls.cert_file, tls.key_file)
            if client_ca is not None:
                context.verify_mode = ssl.CERT_OPTIONAL
                context.load_verify_locations(client_ca)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self.host = host
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def __enter__(self) -> RecordingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"saw {len(self.requests)} of {count} requests")
            return list(self.requests)


def _common_name(connection: object) -> str | None:
    peer = connection.getpeercert() if isinstance(connection, ssl.SSLSocket) else None
    for rdn in (peer or {}).get("subject", ()):
        for name, value in rdn:
            if name == "commonName":
                return value
    return None


def echo(request: Recorded) -> Reply:
    """The upstream API: tells the client what it received."""
    return Reply(body={"method": request.method, "path": request.path, "headers": request.headers})


class TokenIssuer:
    """A token endpoint's behaviour: numbered tokens, or whatever a test sets in `reply`."""

    def __init__(self, prefix: str = "token", expires_in: Any = 3600, token_type: str = "bearer"):
        self.prefix = prefix
        self.expires_in = expires_in
        self.token_type = token_type
        self.reply: Handler | None = None
        self._numbers = itertools.count(1)
        self.issued: list[str] = []

    def __call__(self, request: Recorded) -> Reply:
        return self.reply(request) if self.reply is not None else self.issue(request)

    def issue(self, request: Recorded) -> Reply:
        """A new numbered token, whatever `reply` says: for replies that accept the request."""
        token = f"{self.prefix}-{next(self._numbers)}"
        self.issued.append(token)
        body: dict[str, Any] = {"access_token": token, "token_type": self.token_type}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return Reply(body=body)


class _SocketServer:
    """A loopback listener that hands each connection to `_handle` in a thread of its own."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


class DripServer(_SocketServer):
    """A token endpoint that answers a byte at a time, for ever: only a deadline ends it."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__()
        self.interval = interval
        self.origin = f"http://127.0.0.1:{self.port}"

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 100000\r\n\r\n"
                )
                while not self._stop.wait(self.interval):
                    conn.sendall(b" ")
            except OSError:
                pass


class H2Server(_SocketServer):
    """An upstream that speaks HTTP/2 only (TLS, ALPN h2), and records each request's headers."""

    def __init__(self, tls: ServerCert) -> None:
        super().__init__()
        self.requests: list[Recorded] = []
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(tls.cert_file, tls.key_file)
        self._context.set_alpn_protocols(["h2"])
        self.scheme = "https"
        self.origin = f"https://127.0.0.1:{self.port}"

    def _handle(self, raw: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        try:
            with self._context.wrap_socket(raw, server_side=True) as conn:
                h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
                h2conn.initiate_connection()
                conn.sendall(h2conn.data_to_send())
                while not self._stop.is_set() and (data := conn.recv(65536)):
                    for event in h2conn.receive_data(data):
                        if isinstance(event, h2.events.RequestReceived):
                            headers = [(k.decode(), v.decode()) for k, v in event.headers]
                            self.requests.append(Recorded("GET", "", headers, b""))
                            h2conn.send_headers(event.stream_id, [(":status", "200")])
                            h2conn.send_data(event.stream_id, b'{"ok": true}', end_stream=True)
                    conn.sendall(h2conn.data_to_send())
        except (OSError, ssl.SSLError):
            pass


class EventStreamServer(_SocketServer):
    """A stream that waits on its client: `/events` sends one event, and the next only once
    `/ack` has arrived (or `patience` has run out). A client that saw the first event while
    the stream was still open acks in time; one whose proxy held the stream back cannot."""

    scheme = "http"

    def __init__(self, content_type: str = "text/event-stream", patience: float = 10.0) -> None:
        super().__init__()
        self.content_type = content_type
        self.patience = patience
        self.origin = f"http://127.0.0.1:{self.port}"
        self.authorizations: list[str | None] = []
        self.acked = threading.Event()
        self.acked_in_time = False

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            lines = head.decode("latin-1").split("\r\n")
            fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
            self.authorizations.append(fields.get("Authorization"))
            if lines[0].split()[1] == "/ack":
                self.acked.set()
                conn.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                return
            conn.sendall(
                f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\n"
                "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
            )
            conn.sendall(_chunk(b"data: one\n\n"))
            self.acked_in_time = self.acked.wait(self.patience)
            conn.sendall(_chunk(b"data: two\n\n") + b"0\r\n\r\n")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"
