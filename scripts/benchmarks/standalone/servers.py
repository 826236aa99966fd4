"""Benchmark peers on loopback, in one asyncio process: upstream (HTTP and HTTPS) and IdP.

    python servers.py PORTS_JSON CERT KEY

Writes {"http": port, "https": port, "idp": port} to PORTS_JSON, then serves until killed.
The IdP issues `tok-<client>-<n>` tokens; `/token/<lifetime>/<delay>` sets their lifetime and
how long it takes to answer (`/dpop-token/…`: DPoP tokens, their proofs not checked).
GET /stats on the IdP port returns the fetch times per client.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import parse_qs

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
fetches: dict[str, list[float]] = defaultdict(list)


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return head, body


async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await read_request(reader):
            writer.write(OK)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def idp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while request := await read_request(reader):
            head, body = request
            path = head.split(b" ", 2)[1].decode()
            if path == "/stats":
                answer = json.dumps(fetches).encode()
                content_type = b"application/json"
            else:
                _, kind, lifetime, delay = path.split("/")
                client = parse_qs(body.decode()).get("client_id", ["?"])[0]
                fetches[client].append(time.time())
                await asyncio.sleep(float(delay))
                answer = json.dumps(
                    {
                        "access_token": f"tok-{client}-{len(fetches[client])}",
                        "token_type": "DPoP" if kind == "dpop-token" else "bearer",
                        "expires_in": int(lifetime),
                    }
                ).encode()
                content_type = b"application/json"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: "
                + content_type
                + b"\r\nContent-Length: "
                + str(len(answer)).encode()
                + b"\r\n\r\n"
                + answer
            )
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(ports_file: str, cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    plain = await asyncio.start_server(upstream, "127.0.0.1", 0, backlog=1024)
    tls = await asyncio.start_server(upstream, "127.0.0.1", 0, ssl=context, backlog=1024)
    token = await asyncio.start_server(idp, "127.0.0.1", 0, backlog=1024)
    ports = {
        name: s.sockets[0].getsockname()[1]
        for name, s in (("http", plain), ("https", tls), ("idp", token))
    }
    Path(ports_file).write_text(json.dumps(ports))  # noqa: ASYNC240 - once, at start
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
