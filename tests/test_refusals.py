"""The loopback endpoint that answers refused requests whose bodies mitmproxy streams."""

from __future__ import annotations

import asyncio

from mitmproxy.test import taddons, tflow

from mitm_oauth.mitm.refusals import CARRIER, Refusals


async def ask(port: int, carrier: str | None, body: bytes = b"x" * 5000) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: {len(body)}\r\n"
    if carrier is not None:
        head += f"{CARRIER}: {carrier}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    return answer


def test_the_endpoint_answers_what_a_diverted_request_carries_and_nothing_else():
    refusals = Refusals()
    flow = tflow.tflow()
    flow.request.stream = True

    async def scenario() -> tuple[bytes, bytes, bytes]:
        await refusals.listen()
        assert refusals.port is not None
        refusals.refuse(flow, 403, {"error": "client_not_allowed"})
        carrier = flow.request.headers[CARRIER]
        key, _status, carried = carrier.split(" ")
        answers = (
            await ask(refusals.port, carrier),
            await ask(refusals.port, None),  # any other local process
            await ask(refusals.port, f"{key[::-1]} 200 {carried}"),
        )
        refusals.done()
        return answers

    with taddons.context(refusals):
        answered, without, forged = asyncio.run(scenario())
    assert answered.startswith(b"HTTP/1.1 403 ")
    assert answered.endswith(b'{"error": "client_not_allowed"}')
    assert without == forged == b""  # the connection closed, unanswered
