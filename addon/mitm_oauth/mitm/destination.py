"""Where a flow's request really goes, read as mitmproxy will connect to it."""

from __future__ import annotations

import functools

from mitmproxy import http

from ..matching.index import AmbiguousRequest, Destination


def destination(flow: http.HTTPFlow) -> Destination:
    """The request's real target as mitmproxy will connect to it.

    The Host header, the request line's or HTTP/2's authority and TLS SNI
    must agree with it, or the request is ambiguous (`AmbiguousRequest`).
    """
    request = flow.request
    data = request.data
    hosts = tuple([value for name, value in data.headers.fields if name.lower() == b"host"])
    # The authority is the request line's in HTTP/1 (absolute-form; mitmproxy
    # empties it once it has taken the destination from it) or HTTP/2's `:authority`.
    return _destination(
        data.scheme,
        data.host,
        data.port,
        data.path,
        data.method,
        hosts,
        data.authority,
        flow.client_conn.sni,
    )


@functools.lru_cache(maxsize=4096)
def _destination(
    scheme: bytes,
    host: str,
    port: int,
    path: bytes,
    method: bytes,
    hosts: tuple[bytes, ...],
    authority: bytes,
    sni: str | None,
) -> Destination:
    """`destination` from the request's raw parts: most requests repeat an earlier one's."""
    names = [name.decode("utf-8", "surrogateescape") for name in hosts]
    if authority:
        names.append(authority.decode("utf-8", "surrogateescape"))
    if sni:
        names.append(sni)
    dest = Destination.of(
        scheme.decode("utf-8", "surrogateescape"),
        host,
        port,
        path.decode("utf-8", "surrogateescape"),
        method.decode("utf-8", "surrogateescape"),
        other_names=names,
    )
    if len(hosts) > 1:  # servers and front ends disagree on which one counts
        raise AmbiguousRequest("the request has more than one Host header", dest.host)
    return dest
