"""Clients that say odd things on purpose: raw requests through the proxy's CONNECT tunnel."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path


def connect_tunnel(proxy_port: int, target: str, timeout: float = 10.0) -> socket.socket:
    """A socket through the proxy to `target` (host:port), after CONNECT."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"proxy closed the tunnel: {answer!r}")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"CONNECT refused: {answer!r}")
    return sock


def raw_https(
    proxy_port: int, target: str, sni: str, request: bytes, ca_file: Path, timeout: float = 10.0
) -> bytes:
    """Send `request` as is through a CONNECT tunnel to `target`, with TLS SNI `sni`."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False  # the point is to say a different name than we connect to
    with (
        connect_tunnel(proxy_port, target, timeout) as sock,
        context.wrap_socket(sock, server_hostname=sni) as tls,
    ):
        tls.sendall(request)
        return read_response(tls)


def raw_http(proxy_port: int, request: bytes, timeout: float = 10.0) -> bytes:
    """Send `request` as is to the proxy (absolute-form for plain HTTP)."""
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=timeout) as sock:
        sock.sendall(request)
        return read_response(sock)


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body
