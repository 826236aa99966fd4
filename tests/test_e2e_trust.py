"""End to end: who may use the proxy, and a token going to its host and nowhere else.

Each test is an attack a review reproduced against a real mitmdump; each fails
without the defence it names.
"""

from __future__ import annotations

import json
import re
import threading

import httpx
import pytest
from mitmproxy import io

from tests.conftest import client, curl, rule, rules
from tests.support.clients import raw_http, raw_https
from tests.support.servers import RecordingServer, Reply


def authorizations(server: RecordingServer) -> list[str | None]:
    return [r.header("Authorization") for r in server.requests]


def localhost_rule(upstream: RecordingServer, idp: RecordingServer) -> str:
    match = {"host": "localhost", "port": upstream.port, "scheme": upstream.scheme}
    return rule("local", upstream, idp, match=match)


# -- the proxy does not serve strangers ---------------------------------------------------

ELSEWHERE = {"oauth_allowed_clients": "10.0.0.0/8"}
"""Tests run on loopback: allowing only 10/8 makes the test client a stranger."""


def test_a_client_outside_the_allowed_networks_gets_403_and_no_token(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp)), options=ELSEWHERE)
    status, body = curl(proxy, f"{api.origin}/v1")
    assert status == 403
    answer = json.loads(body)
    assert answer["error"] == "client_not_allowed"
    assert answer["rule"] == "api"
    assert "127.0.0.1" in answer["message"]
    assert idp.requests == []
    assert api.requests == []


def test_traffic_no_rule_covers_is_not_refused_to_strangers(start_proxy, idp, api):
    proxy = start_proxy(rules(localhost_rule(api, idp)), options=ELSEWHERE)
    assert curl(proxy, f"{api.origin}/v1")[0] == 200  # 127.0.0.1: no rule names it
    assert authorizations(api) == [None]


@pytest.mark.parametrize(("proxyauth", "status"), [("alice:wonder", 200), ("any", 403)])
def test_clients_that_passed_proxyauth_get_tokens_from_anywhere(
    start_proxy, idp, api, proxyauth, status
):
    """`proxyauth=any` accepts any password: that authenticates nobody."""
    proxy = start_proxy(rules(rule("api", api, idp)), options={**ELSEWHERE, "proxyauth": proxyauth})
    assert curl(proxy, f"{api.origin}/v1", "--proxy-user", "alice:wonder")[0] == status
    assert authorizations(api) == (["Bearer sentinel-token-1"] if status == 200 else [])


@pytest.mark.parametrize(
    ("options", "warned"),
    [
        ({"mode": "regular@0.0.0.0:0"}, True),
        ({"mode": "regular@0.0.0.0:0", "proxyauth": "alice:wonder"}, False),
        ({}, False),  # --listen-host 127.0.0.1
    ],
)
def test_listening_beyond_loopback_without_proxyauth_is_warned_about(
    start_proxy, idp, api, options, warned
):
    proxy = start_proxy(rules(rule("api", api, idp)), options=options)  # returns once listening
    warnings = re.findall(r"mitmproxy listens beyond this machine.*", proxy.output)
    if warned:
        assert warnings == [
            "mitmproxy listens beyond this machine (0.0.0.0:0) without proxyauth: only "
            "clients in oauth_allowed_clients (127.0.0.0/8, ::1/128) get tokens; "
            "listen on 127.0.0.1 (--listen-host 127.0.0.1) or set proxyauth"
        ]
    else:
        assert warnings == []


LOOPBACK_SPELLINGS = [
    "127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST.", "app.localhost", "127.1", "2130706433",
    "0x7f000001", "0.0.0.0", "[::ffff:127.0.0.1]", "[::1]",  # noqa: S104 - a spelling, no bind
]  # fmt: skip


def test_mitmweb_is_not_reachable_through_its_own_proxy(start_proxy, idp, api):
    """CVE-2025-23217: a client read flows and turned off redaction through the proxy."""
    proxy = start_proxy(rules(rule("api", api, idp)), web=True)
    body = b'{"oauth_redact_flows": false}'
    for host in LOOPBACK_SPELLINGS:
        for request in [
            f"GET http://{host}:{proxy.web_port}/flows HTTP/1.1\r\n\r\n".encode(),
            f"PUT http://{host}:{proxy.web_port}/options HTTP/1.1\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body,
            f"GET http://{host}:{proxy.port}/ HTTP/1.1\r\n\r\n".encode(),  # the proxy itself
        ]:
            head, _, answer = raw_http(proxy.port, request).partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 403"), (request, head)
            assert json.loads(answer)["error"] == "proxy_self_access"
    with proxy.api() as web:  # the operator's own view, not through the proxy
        assert web.get("/options").json()["oauth_redact_flows"]["value"] is True


def test_a_tunnel_to_the_web_interface_is_refused(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp)), web=True)
    request = f"CONNECT 127.0.0.1:{proxy.web_port} HTTP/1.1\r\n\r\n".encode()
    assert raw_http(proxy.port, request).startswith(b"HTTP/1.1 403")


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


# -- nothing leaks, nothing is lost ------------------------------------------------------


@pytest.mark.parametrize(
    "curl_args",
    [
        ["--data-binary", "@{body}"],  # 200 KB with a Content-Length: streamed from the start
        ["--data-binary", "@{small}"],  # 5 KB
        ["--data-binary", "@{body}", "-H", "Transfer-Encoding: chunked"],  # streamed once 1k is in
    ],
)
def test_a_refused_request_with_a_streamed_body_gets_the_502(
    start_proxy, tmp_path, issuer, idp, api, curl_args
):
    issuer.reply = lambda r: Reply(401, {"error": "invalid_client"})
    (tmp_path / "body").write_bytes(b"x" * 200_000)
    (tmp_path / "small").write_bytes(b"x" * 5_000)
    proxy = start_proxy(rules(rule("api", api, idp)), options={"stream_large_bodies": "1k"})
    args = [a.format(body=tmp_path / "body", small=tmp_path / "small") for a in curl_args]
    status, body = curl(proxy, f"{api.origin}/upload", *args)
    assert status == 502
    assert json.loads(body)["token_endpoint_error"] == "invalid_client"
    assert api.requests == []
    assert "Traceback" not in proxy.output
    with client(proxy) as http:  # the connection was not lost: the proxy still answers
        assert http.post(f"{api.origin}/again", content=b"y" * 5000).status_code == 502
    assert api.requests == []


def test_a_flow_in_flight_at_exit_is_saved_without_its_token(start_proxy, tmp_path, idp):
    """The README's CI recipe: a slow request, then the proxy is stopped (SIGTERM)."""
    saved = tmp_path / "flows.mitm"
    release = threading.Event()

    def slow(request):
        release.wait(10)
        return Reply(body={"ok": True})

    with RecordingServer(slow) as api:
        proxy = start_proxy(rules(rule("api", api, idp)), options={"save_stream_file": str(saved)})
        outcome: list[object] = []

        def ask() -> None:
            try:
                with client(proxy) as http:
                    outcome.append(http.get(f"{api.origin}/slow"))
            except httpx.HTTPError as e:  # the proxy went away with the request
                outcome.append(e)

        request = threading.Thread(target=ask, daemon=True)
        request.start()
        (seen,) = api.wait_for_requests(1)
        assert seen.header("Authorization") == "Bearer sentinel-token-1"
        proxy.stop()
        release.set()
        request.join(10)
    assert isinstance(outcome[0], httpx.HTTPError)
    with saved.open("rb") as f:
        (flow,) = list(io.FlowReader(f).stream())
    assert flow.request.path == "/slow"
    assert flow.response is None
    assert flow.request.headers["Authorization"].startswith("Bearer [redacted sha256:")
    assert b"sentinel-token-1" not in saved.read_bytes()


@pytest.mark.parametrize(
    "encode", [lambda text: b"\xef\xbb\xbf" + text.encode(), lambda text: text.encode("utf-16")]
)
def test_an_exchange_answered_in_json_with_a_bom_or_utf16_is_shown_redacted(
    start_proxy, issuer, idp, api, encode
):
    def answer(request):
        token = issuer.issue(request).body["access_token"]
        return Reply(body=encode(json.dumps({"access_token": token, "expires_in": 60})))

    issuer.reply = answer
    proxy = start_proxy(rules(rule("api", api, idp)), web=True)
    assert curl(proxy, f"{api.origin}/v1")[0] == 200  # json.loads(bytes) reads both
    exchange = next(f for f in proxy.flows() if "token exchange" in f["comment"])
    with proxy.api() as web:
        shown = web.get(f"/flows/{exchange['id']}/response/content.data").text
    assert json.loads(shown)["access_token"].startswith("[redacted sha256:")
    assert "sentinel-token-1" not in shown
