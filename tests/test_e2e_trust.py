"""End to end: who may use the proxy, and a token going to its host and nowhere else.

Each test is an attack a review reproduced against a real mitmdump; each fails
without the defence it names.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading

import hpack
import httpx
import pytest
from mitmproxy import io

from mitm_oauth.access import listening_ports
from tests.conftest import async_client, client, curl, rule, rules
from tests.support.clients import raw_http, raw_https
from tests.support.proxy import ADDON, Mitmdump
from tests.support.servers import H2Server, RecordingServer, Reply


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
    "127.0.0.1",
    "127.0.0.2",
    "localhost",
    "LOCALHOST.",
    "app.localhost",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0.0.0.0",  # noqa: S104 - a spelling, no bind
    "[::ffff:127.0.0.1]",
    "[::1]",
]


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
    assert proxy.printed("no token for a request to localhost")


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


@pytest.mark.parametrize(
    ("replayed", "options"),
    [
        (Reply(body=b"x" * 3_000_000, content_type="text/plain"), {"body_size_limit": "1m"}),
        (Reply(body={"late": True}, delay=3), {"oauth_replay_timeout": "1"}),
    ],
)
def test_a_replay_is_bounded_in_size_and_time(start_proxy, idp, replayed, options):
    """Past mitmproxy's body limit or the replay's deadline, the first answer stands."""

    def api_handler(request):
        first = (request.header("Authorization") or "").endswith("sentinel-token-1")
        return Reply(401, {"error": "invalid_token"}) if first else replayed

    with RecordingServer(api_handler) as api:
        proxy = start_proxy(rules(rule("api", api, idp, retry_on_401=True)), options=options)
        status, body = curl(proxy, f"{api.origin}/big")
        assert len(api.wait_for_requests(2)) == 2  # the request and its replay
    assert status == 401
    assert json.loads(body) == {"error": "invalid_token"}
    assert proxy.printed("replay failed")


def test_tokens_that_arrive_expired_go_to_their_waiters_and_the_endpoint_sees_one_at_a_time(
    start_proxy, issuer, idp, api_tls
):
    """expires_in 1 from an endpoint that takes a second: no usable time is left on arrival."""
    issuer.expires_in = 1
    issuer.reply = lambda request: Reply(**{**vars(issuer.issue(request)), "delay": 1.0})
    proxy = start_proxy(rules(rule("api", api_tls, idp)))

    async def burst() -> list[int]:
        async with async_client(proxy, limits=httpx.Limits(max_connections=20)) as http:
            answers = await asyncio.gather(*(http.get(f"{api_tls.origin}/{i}") for i in range(20)))
        return [a.status_code for a in answers]

    assert asyncio.run(burst()) == [200] * 20
    assert len(idp.requests) == 1  # twenty requests waited for one fetch
    with client(proxy) as http:
        assert [http.get(f"{api_tls.origin}/then").status_code for _ in range(2)] == [200, 200]
    assert len(idp.requests) == 3  # each later request waited for its own fetch
    assert authorizations(api_tls) == (
        ["Bearer sentinel-token-1"] * 20 + ["Bearer sentinel-token-2", "Bearer sentinel-token-3"]
    )
    spent = re.compile(r"took \d+\.\d s to issue a token that lives 1 s")
    assert proxy.wait_for_line(spent) is not None
    assert len(spent.findall(proxy.output)) == 1


def escaped(value: str) -> list[str]:
    """How Python and JSON print `value`: in repr() of text and bytes, in a JSON string."""
    backslashed = value.replace("\\", "\\\\")
    return [
        value,
        backslashed,
        backslashed.replace("'", "\\'"),
        value.encode("unicode_escape").decode(),
        value.encode().decode("latin-1").encode("unicode_escape").decode(),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
    ]


DEBUG = {"proxy_debug": "true", "termlog_verbosity": "debug"}
"""mitmproxy at its most talkative: every byte it sends is logged."""


def test_a_token_with_backslashes_and_quotes_stays_out_of_proxy_debug(start_proxy, issuer, idp):
    issuer.prefix = "t0k\\en'x\"y"
    with RecordingServer(lambda r: Reply(body={"ok": True})) as api:
        proxy = start_proxy(rules(rule("api", api, idp)), options=DEBUG)
        assert curl(proxy, f"{api.origin}/v1")[0] == 200
        proxy.stop()
    (token,) = issuer.issued
    assert authorizations(api) == [f"Bearer {token}"]
    assert proxy.printed("SendData(server")  # the raw traffic was logged
    for spelling in escaped(token):
        assert spelling not in proxy.output


def test_every_live_token_stays_out_of_the_log_however_many_there_are(start_proxy, issuer, idp):
    """500 credential sets, each with its token: the first is still cut out at the end.

    Each set's secret and token are spelt three ways each, its Basic pair three more: 4,500
    spellings, more than the 4,096 the redactor used to remember.
    """
    issuer.prefix = "t0k3n/+="
    sets = 500
    with RecordingServer(lambda r: Reply(body={"ok": True})) as api:
        many = [
            rule(
                f"r{n}",
                api,
                idp,
                client_id=f"client-{n}",
                client_secret=f"s3cret/+={n}",
                match={"host": api.host, "port": api.port, "scheme": "http", "path": f"/r{n}"},
            )
            for n in range(sets)
        ]
        proxy = start_proxy(rules(*many), web=True)

        async def everyone() -> list[int]:
            limits = httpx.Limits(max_connections=30)
            async with async_client(proxy, limits=limits) as http:
                asked = [http.get(f"{api.origin}/r{n}") for n in range(1, sets)]
                answers = await asyncio.gather(*asked)
            return [a.status_code for a in answers]

        assert curl(proxy, f"{api.origin}/r0")[0] == 200  # the first token
        assert asyncio.run(everyone()) == [200] * (sets - 1)
        with proxy.api() as web:  # now log every byte sent, as the operator may
            web.put("/options", json={"proxy_debug": True, "termlog_verbosity": "debug"})
        assert curl(proxy, f"{api.origin}/r0")[0] == 200  # the first token, sent again
        proxy.stop()
    assert len(issuer.issued) == sets
    first = issuer.issued[0]
    assert authorizations(api)[-1] == authorizations(api)[0] == f"Bearer {first}"
    assert proxy.printed("SendData(server")
    for spelling in escaped(first):
        assert spelling not in proxy.output


SECRET = 'sé"cret-sentinel\\7f3a'
"""Non-ASCII, a double quote and a backslash: escaped differently by JSON and by Python."""


def test_a_json_escaped_secret_echoed_by_the_endpoint_is_cut_everywhere(
    start_proxy, tmp_path, issuer, idp, api
):
    issuer.reply = lambda r: Reply(
        400, {"error": "invalid_client", "error_description": f"bad body {r.body.decode()}"}
    )
    shown = rule(
        "api", api, idp, auth_style="params", token_request_format="json", client_secret=SECRET
    )
    proxy = start_proxy(rules(shown))
    status, body = curl(proxy, f"{api.origin}/v1")
    assert status == 502
    rules_file = tmp_path / "check.yaml"
    rules_file.write_text(rules(shown))
    check = subprocess.run(
        [sys.executable, "-m", "mitm_oauth", "check", "--fetch", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 1
    assert "[redacted]" in body
    assert "[redacted]" in check.stdout
    outputs = body + proxy.output + check.stdout + check.stderr
    for spelling in escaped(SECRET):
        assert spelling not in outputs


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("client_secret", "!s3cret-sentinel-tag", "a value that starts with '!' must be quoted"),
        ("client_secret", "*s3cret-sentinel-alias", "a value that starts with '*' or '&'"),
        ("token_headers", '{X-Api-Key: "k3y-sentinel\\t"}', "no space or tab at its start"),
    ],
)
def test_a_secret_in_a_broken_rules_file_is_never_quoted(
    start_proxy, tmp_path, idp, api, field, value, message
):
    broken = (
        "rules:\n  - name: api\n    match: {host: example.com}\n"
        f"    token_url: {idp.origin}/token\n    client_id: x\n    {field}: {value}\n"
    )
    if field == "token_headers":
        broken += "    client_secret: s\n"
    secret = value.split(": ")[-1].strip('}"').removesuffix("\\t")
    events = tmp_path / "events.jsonl"
    proxy = start_proxy(rules(rule("api", api, idp)), options={"oauth_log_json": str(events)})
    (tmp_path / "broken.yaml").write_text(broken)
    (tmp_path / "broken.yaml").replace(proxy.rules_file)  # a hot reload
    proxy.wait_for_line(re.compile(r"previous rules stay active"))
    check = subprocess.run(
        [sys.executable, "-m", "mitm_oauth", "check", str(proxy.rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert check.returncode == 1
    assert message in check.stderr
    assert proxy.printed(message)
    outputs = proxy.output + events.read_text() + check.stdout + check.stderr
    assert "reload_failed" in outputs
    assert secret not in outputs


def test_the_rules_watcher_survives_any_edit(start_proxy, tmp_path, idp, api, api_tls):
    """A removed rule stops getting tokens, whatever broken edits came before."""
    proxy = start_proxy(rules(rule("api", api, idp), rule("tls", api_tls, idp)))

    def rewrite(text: str, expected: str) -> None:
        (tmp_path / "new.yaml").write_text(text)
        (tmp_path / "new.yaml").replace(proxy.rules_file)
        assert proxy.wait_for_line(re.compile(re.escape(expected))) is not None

    rewrite(
        rules(rule("api", api, idp, token_url="http://[127.0.0.1")),
        "field 'token_url': is not a valid URL; the previous rules stay active",
    )
    rewrite(DEEP, "nested too deeply to be a rules file; the previous rules stay active")
    rewrite(
        rules(rule("api", api, idp, client_secret=None, client_secret_file="~no-such-user/y")),
        "names the home folder of an unknown user; the previous rules stay active",
    )
    rewrite(rules(rule("tls", api_tls, idp)), "1 rule(s) loaded")
    assert curl(proxy, f"{api.origin}/v1")[0] == 200
    assert curl(proxy, f"{api_tls.origin}/v1")[0] == 200
    assert authorizations(api) == [None]
    assert authorizations(api_tls) == ["Bearer sentinel-token-1"]
    assert "Traceback" not in proxy.output


def rule_with(field: str, value: str) -> str:
    return (
        "rules:\n  - name: api\n    match: {host: example.com}\n"
        "    token_url: https://idp.example.com/token\n    client_id: x\n"
        + ("    client_secret: s\n" if field != "client_secret_file" else "")
        + f"    {field}: {value}\n"
    )


DEEP = '{"rules": [{"name": "api", "x": ' + "[" * 5000 + "]" * 5000 + "}]}"
"""JSON nested deeper than Python's parsers recurse."""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (rule_with("token_url", "'http://[127.0.0.1'"), "field 'token_url': is not a valid URL"),
        (rule_with("client_secret_file", "~nosuchuser/x"), "home folder of an unknown user"),
        (DEEP, "nested too deeply to be a rules file"),
    ],
)
def test_typos_at_start_up_are_one_line(tmp_path, text, message):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(text)
    proxy = Mitmdump(rules_file, tmp_path / "confdir")
    assert proxy.run_to_exit() != 0
    assert proxy.printed(message)
    assert "Traceback" not in proxy.output


@pytest.mark.parametrize("http2", [False, True])
def test_a_refused_streamed_request_inside_a_tunnel_gets_the_502(
    start_proxy, tmp_path, issuer, idp, api_tls, http2
):
    issuer.reply = lambda r: Reply(401, {"error": "invalid_client"})
    (tmp_path / "body").write_bytes(b"x" * 200_000)
    options = {"stream_large_bodies": "1k", "connection_strategy": "lazy"}
    proxy = start_proxy(rules(rule("api", api_tls, idp)), options=options)
    args = ["--data-binary", f"@{tmp_path / 'body'}"] + (["--http2"] if http2 else [])
    if (
        http2
        and "HTTP2"
        not in subprocess.run(
            ["curl", "--version"], capture_output=True, text=True, check=False
        ).stdout.split()
    ):
        pytest.skip("curl was built without HTTP/2")
    status, body = curl(proxy, f"{api_tls.origin}/upload", *args)
    assert status == 502
    assert json.loads(body)["token_endpoint_error"] == "invalid_client"
    assert api_tls.requests == []
    assert "Traceback" not in proxy.output


BARE_TOKEN = {"header_name": "X-Api-Token", "header_value": "{access_token}"}
"""A rule whose header value is the token and nothing else."""
SENT = re.compile(r"""SendData\(server, (b'(?:[^'\\\n]|\\.)*'|b"(?:[^"\\\n]|\\.)*")""")


def sent_to_servers(output: str) -> list[bytes]:
    """The bytes proxy_debug says mitmproxy sent to servers (whole statements only)."""
    sent = []
    for match in SENT.finditer(output):
        with contextlib.suppress(SyntaxError, ValueError):
            sent.append(ast.literal_eval(match.group(1)))
    return sent


@pytest.mark.parametrize(
    ("header", "template"), [("authorization", {}), ("x-api-token", BARE_TOKEN)]
)
def test_a_token_sent_over_http2_stays_out_of_proxy_debug(
    start_proxy, issuer, idp, server_cert, header, template
):
    """HTTP/2 compresses header values (HPACK): proxy_debug logs them as coded bytes."""
    with H2Server(server_cert) as api:
        proxy = start_proxy(rules(rule("api", api, idp, **template)), options=DEBUG)
        assert curl(proxy, f"{api.origin}/v1")[0] == 200
        proxy.stop()
    (token,) = issuer.issued
    sent = [r.header(header) for r in api.requests]
    assert sent == [token if template else f"Bearer {token}"]
    frames, headers = 0, []
    for sent in sent_to_servers(proxy.output):
        while len(sent) >= 9 and not sent.startswith(b"PRI *"):  # a frame: 9 bytes, payload
            length, kind = int.from_bytes(sent[:3], "big"), sent[3]
            if kind == 1:  # HEADERS: what HPACK makes of it (a fresh decoder: it comes first)
                frames += 1
                with contextlib.suppress(hpack.HPACKError):
                    headers += hpack.Decoder().decode(sent[9 : 9 + length], raw=True)
            sent = sent[9 + length :]
    assert frames >= 1  # the request's HEADERS frame was logged
    assert all(token.encode() not in value for _, value in headers)
    assert proxy.printed("[redacted]")


def test_a_token_cut_in_two_by_proxy_debug_is_cut_out_whole(start_proxy, issuer, idp):
    """mitmproxy cuts debug lines at 2,048 characters: the cut may fall inside the token."""
    issuer.prefix = "Zq8xW3vN7pL2kR9mT4yB6cH1jF5dG0sA8eU3iO7" * 2
    with RecordingServer(lambda r: Reply(body={"ok": True})) as api:
        proxy = start_proxy(rules(rule("api", api, idp)), options=DEBUG)
        with client(proxy) as http:
            for n in range(0, 100, 3):  # moves the cut across the token
                assert http.get(f"{api.origin}/v1/{'p' * n}").status_code == 200
        proxy.stop()
    (token,) = issuer.issued
    assert proxy.printed("…")
    pieces = {token[i : i + 12] for i in range(len(token) - 11)}
    assert not any(piece in proxy.output for piece in pieces)


@pytest.mark.parametrize(
    ("typo", "secret", "message"),
    [
        (
            "client_secret:s3cret-sentinel-flow",
            "s3cret-sentinel-flow",
            "unknown key 'client_secret…' (write 'client_secret: value'",
        ),
        (
            "client_secret=s3cret-sentinel-flow",
            "s3cret-sentinel-flow",
            "unknown key 'client_secret…' (write 'client_secret: value'",
        ),
        (
            "client_secret s3cret-sentinel-flow",
            "s3cret-sentinel-flow",
            "unknown key 'client_secret…' (write 'client_secret: value'",
        ),
        (
            "client_secret: s, token_headers: {X-Api-Key:k3y-sentinel-flow}",
            "k3y-sentinel-flow",
            "field 'token_headers': 'X-Api-Key…' is not a header name",
        ),
    ],
)
def test_a_secret_run_together_with_its_key_is_never_quoted(tmp_path, typo, secret, message):
    """YAML reads `key:value` (no space) in a flow mapping as one key."""
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "rules:\n  - {name: api, match: {host: example.com}, "
        f"token_url: 'https://idp.example.com/token', client_id: x, {typo}}}\n"
    )
    proxy = Mitmdump(rules_file, tmp_path / "confdir")
    assert proxy.run_to_exit() != 0
    check = subprocess.run(
        [sys.executable, "-m", "mitm_oauth", "check", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proxy.printed(message)
    assert message in check.stderr
    assert secret not in proxy.output + check.stdout + check.stderr


@pytest.mark.skipif(listening_ports() is None, reason="needs Linux's /proc to find the ports")
def test_mitmweb_on_a_port_it_chose_is_not_reachable_through_its_own_proxy(start_proxy, idp, api):
    """`--web-port 0`: mitmweb picks a port and does not say which, not even to addons."""
    proxy = start_proxy(rules(rule("api", api, idp)), web=True, web_port=0)
    assert proxy.wait_for_line(re.compile(r"Web server listening")) is not None
    assert proxy.process is not None
    ports = listening_ports(proxy.process.pid)
    assert ports is not None
    assert len(ports) >= 3  # the proxy, mitmweb, the addon's refusal endpoint
    for port in ports:
        request = f"GET http://127.0.0.1:{port}/flows HTTP/1.1\r\n\r\n".encode()
        head, _, answer = raw_http(proxy.port, request).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 403"), (port, head)
        assert json.loads(answer)["error"] == "proxy_self_access"


@pytest.mark.parametrize(
    "option",
    [
        ("map_remote", "|127.0.0.1:{api}/v1|127.0.0.1:{other}/v1"),  # where it goes
        ("modify_headers", "/~q/Host/evil.example"),  # what it says it is for
    ],
)
def test_a_request_other_addons_change_after_its_token_is_refused(start_proxy, idp, api, option):
    """mitmproxy's own map_remote and modify_headers run after the addon's hooks."""
    with RecordingServer(api.handler) as other:
        name, value = option
        options = {name: value.format(api=api.port, other=other.port)}
        proxy = start_proxy(rules(rule("api", api, idp)), options=options)
        status, body = curl(proxy, f"{api.origin}/v1/x")
    assert status == 502
    assert "it no longer goes where that rule matched" in json.loads(body)["message"]
    assert other.requests == []
    assert api.requests == []


def test_a_token_copied_by_stickyauth_goes_nowhere(start_proxy, idp, api):
    """stickyauth keeps a host's last Authorization and adds it to its other requests."""
    match = {"host": api.host, "port": api.port, "scheme": "http", "path": "/v1"}
    proxy = start_proxy(rules(rule("api", api, idp, match=match)), options={"stickyauth": "~q"})
    assert curl(proxy, f"{api.origin}/v1/a")[0] == 200
    status, body = curl(proxy, f"{api.origin}/admin")  # no rule matches: no token may go
    assert status == 502
    assert "copied by stickyauth" in json.loads(body)["message"]
    assert authorizations(api) == ["Bearer sentinel-token-1"]


def test_a_streamed_refusal_under_mitmweb_on_a_port_it_chose_still_gets_its_json(
    start_proxy, tmp_path, issuer, idp, api
):
    """Every port of the process counts as the proxy's own, but not for the refusals' way out."""
    issuer.reply = lambda r: Reply(401, {"error": "invalid_client"})
    (tmp_path / "body").write_bytes(b"x" * 200_000)
    options = {"stream_large_bodies": "1k"}
    proxy = start_proxy(rules(rule("api", api, idp)), web=True, web_port=0, options=options)
    status, body = curl(proxy, f"{api.origin}/upload", "--data-binary", f"@{tmp_path / 'body'}")
    assert status == 502
    assert json.loads(body)["token_endpoint_error"] == "invalid_client"
    assert api.requests == []


def test_the_addon_survives_its_script_being_reloaded(start_proxy, tmp_path, idp, api):
    """mitmproxy reloads an edited script, calling its `done` from a synchronous context."""
    script = tmp_path / "client_credentials.py"
    script.write_text(ADDON.read_text())
    proxy = start_proxy(rules(rule("api", api, idp)), script=script)
    assert curl(proxy, f"{api.origin}/v1")[0] == 200
    script.write_text(ADDON.read_text() + "\n# edited\n")
    assert proxy.wait_for_line(re.compile(r"oauth: 1 request\(s\) got a token")) is not None
    assert proxy.wait_for_count("rule(s) loaded", 2)  # the reloaded script read its rules
    assert curl(proxy, f"{api.origin}/v1")[0] == 200
    assert authorizations(api) == ["Bearer sentinel-token-1", "Bearer sentinel-token-2"]
    assert "AddonManagerError" not in proxy.output
