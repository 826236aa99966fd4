"""A small asyncio load generator (stdlib only): keep-alive HTTP/1.1 through a proxy.

    python load.py '{"mode": "throughput", ...}'   → JSON on stdout

Plain HTTP goes as absolute-form requests; HTTPS through CONNECT and TLS, trusting `ca`.
Modes: throughput (count responses per target for `duration` s), burst (one request each on
`count` new connections at once), latency (per-request latency for `duration` s), sequential
(`count` requests one after another on one connection: the same work every time).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import sys
import time
from typing import Any
from urllib.parse import urlsplit

Config = dict[str, Any]
"""What the load generator is asked: the mode, the targets and the mode's parameters."""


class Connection:
    def __init__(self, proxy_port: int, url: str, ca: str | None) -> None:
        self.proxy_port, self.url, self.ca = proxy_port, url, ca
        parts = urlsplit(url)
        self.https = parts.scheme == "https"
        self.authority = parts.netloc
        target = url if not self.https else (parts.path or "/")
        self.request = f"GET {target} HTTP/1.1\r\nHost: {self.authority}\r\n\r\n".encode()

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.proxy_port)
        if self.https:
            self.writer.write(
                f"CONNECT {self.authority} HTTP/1.1\r\nHost: {self.authority}\r\n\r\n".encode()
            )
            await self.reader.readuntil(b"\r\n\r\n")
            context = ssl.create_default_context(cafile=self.ca)
            await self.writer.start_tls(context, server_hostname=urlsplit(self.url).hostname)

    async def get(self) -> int:
        self.writer.write(self.request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return int(head.split(b" ", 2)[1])

    def close(self) -> None:
        self.writer.close()


async def throughput(config: Config) -> dict[str, Any]:
    stop = time.monotonic() + config["duration"]
    counts = [0] * len(config["targets"])
    errors = [0] * len(config["targets"])

    async def worker(index: int, target: dict[str, Any]) -> None:
        connection = Connection(target["proxy"], target["url"], config.get("ca"))
        await connection.open()
        while time.monotonic() < stop:
            if await connection.get() == 200:
                counts[index] += 1
            else:
                errors[index] += 1
        connection.close()

    await asyncio.gather(
        *(
            worker(i, t)
            for i, t in enumerate(config["targets"])
            for _ in range(t.get("connections", 2))
        )
    )
    return {"counts": counts, "errors": errors}


async def burst(config: Config) -> dict[str, Any]:
    target = config["targets"][0]

    async def one() -> tuple[int, float]:
        connection = Connection(target["proxy"], target["url"], config.get("ca"))
        started = time.monotonic()
        await connection.open()
        status = await connection.get()
        connection.close()
        return status, time.monotonic() - started

    results = await asyncio.gather(*(one() for _ in range(config["count"])))
    return {"statuses": [s for s, _ in results], "latencies": [t for _, t in results]}


async def latency(config: Config) -> dict[str, Any]:
    target = config["targets"][0]
    stop = time.monotonic() + config["duration"]
    samples: list[tuple[float, float, int]] = []

    async def worker() -> None:
        connection = Connection(target["proxy"], target["url"], config.get("ca"))
        await connection.open()
        while time.monotonic() < stop:
            started = time.monotonic()
            status = await connection.get()
            samples.append((started, time.monotonic() - started, status))
            await asyncio.sleep(config.get("pause", 0.005))
        connection.close()

    await asyncio.gather(*(worker() for _ in range(target.get("connections", 4))))
    return {"samples": samples}


async def sequential(config: Config) -> dict[str, Any]:
    target = config["targets"][0]
    connection = Connection(target["proxy"], target["url"], config.get("ca"))
    await connection.open()
    statuses = [await connection.get() for _ in range(config["count"])]
    connection.close()
    return {"statuses": statuses}


if __name__ == "__main__":
    config = json.loads(sys.argv[1])
    modes = {"throughput": throughput, "burst": burst, "latency": latency, "sequential": sequential}
    mode = modes[config["mode"]]
    print(json.dumps(asyncio.run(mode(config))))
