"""End to end: who may use the proxy, and a token going to its host and nowhere else.

Each test is an attack a review reproduced against a real mitmdump; each fails
without the defence it names.
"""

from __future__ import annotations

import pytest

from tests.conftest import rule, rules
from tests.support.clients import raw_http, raw_https
from tests.support.servers import RecordingServer


def authorizations(server: RecordingServer) -> list[str | None]:
    return [r.header("Authorization") for r in server.requests]


def localhost_rule(upstream: RecordingServer, idp: RecordingServer) -> str:
    match = {"host": "localhost", "port": upstream.port, "scheme": upstream.scheme}
    return rule("local", upstream, idp, match=match)


# -- a token goes to its host and nowhere else -------------------------------------------


@pytest.mark.parametrize(
    ("target", "injected"),
    [("/v1/x", True), ("https://localhost:{port}/v1/x", True), ("https://evil.test/v1/x", False)],
)
def test_a_request_line_naming_another_host_inside_a_tunnel_gets_no_token(
    start_proxy, idp, api_tls, target, injected
):
    """Servers route by the request line's authority (RFC 9112 §3.2.2), not the tunnel's."""
    proxy = start_proxy(rules(localhost_rule(api_tls, idp)))
    request = (
        f"GET {target.format(port=api_tls.port)} HTTP/1.1\r\n"
        f"Host: localhost:{api_tls.port}\r\nConnection: close\r\n\r\n"
    )
    answer = raw_https(
        proxy.port, f"localhost:{api_tls.port}", "localhost", request.encode(), proxy.ca_file
    )
    assert answer.startswith(b"HTTP/1.1 200")
    assert authorizations(api_tls) == (["Bearer sentinel-token-1"] if injected else [None])
    assert (idp.requests != []) is injected


@pytest.mark.parametrize(
    "host_header",
    [
        "local\u200bhost:{port}",  # zero-width space
        "local\u00adhost:{port}",  # soft hyphen
        "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54:{port}",  # full-width letters
        "localhost:{arabic_port}",  # a port in Arabic-Indic digits
        "localhost:{port}\r\nHost: localhost:{port}",  # the same Host header twice
    ],
)
def test_host_spellings_a_server_would_not_fold_get_no_token(start_proxy, idp, api, host_header):
    proxy = start_proxy(rules(localhost_rule(api, idp)))
    arabic_port = str(api.port).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    host = host_header.format(port=api.port, arabic_port=arabic_port)
    for header in (f"localhost:{api.port}", host):  # the plain spelling first: it gets the token
        request = f"GET http://localhost:{api.port}/v1 HTTP/1.1\r\nHost: {header}\r\n\r\n"
        assert raw_http(proxy.port, request.encode()).startswith(b"HTTP/1.1 200")
    assert authorizations(api) == ["Bearer sentinel-token-1", None]
    assert "no token for a request to localhost" in proxy.output


@pytest.mark.parametrize("port", ["²", "٨٠", "8" * 5000])
def test_traffic_no_rule_covers_passes_whatever_its_host_header(start_proxy, idp, api, port):
    proxy = start_proxy(rules(localhost_rule(api, idp)))  # no rule names 127.0.0.1
    request = f"GET {api.origin}/v1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    answer = raw_http(proxy.port, request.encode())
    assert answer.startswith(b"HTTP/1.1 200")
    assert authorizations(api) == [None]
    assert "Traceback" not in proxy.output
    assert "internal error" not in proxy.output
