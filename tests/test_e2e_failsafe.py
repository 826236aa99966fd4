"""End to end: where a token may go, and what happens when the token endpoint misbehaves."""

from __future__ import annotations

import base64
import json
import re
import threading
from urllib.parse import quote, quote_plus

import pytest

from tests.conftest import client, curl, rule, rules
from tests.support.clients import raw_http, raw_https
from tests.support.servers import DripServer, Recorded, RecordingServer, Reply


def authorizations(server: RecordingServer) -> list[str | None]:
    return [r.header("Authorization") for r in server.requests]


# -- where a token may go ---------------------------------------------------------------


def test_host_header_naming_another_host_gets_no_token(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp)))
    curl(proxy, f"{api.origin}/v1", "-H", "Host: evil.example.net")
    curl(proxy, f"{api.origin}/v1", "-H", f"Host: 127.0.0.1:{api.port + 1}")
    curl(proxy, f"{api.origin}/v1")
    assert authorizations(api) == [None, None, "Bearer sentinel-token-1"]
    assert proxy.printed("no token for a request to 127.0.0.1: the request also names")


def test_two_host_headers_get_no_token(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp)))
    request = (
        f"GET {api.origin}/v1 HTTP/1.1\r\nHost: 127.0.0.1:{api.port}\r\n"
        f"Host: evil.example.net\r\nConnection: close\r\n\r\n"
    ).encode()
    raw_http(proxy.port, request)
    assert all(a is None for a in authorizations(api))
    assert idp.requests == []


def localhost_rule(upstream: RecordingServer, idp: RecordingServer) -> str:
    return rule("local", upstream, idp, match={"host": "localhost", "port": upstream.port})


@pytest.mark.parametrize(("sni", "injected"), [("localhost", True), ("alt.localhost", False)])
def test_sni_must_name_the_connect_target(start_proxy, idp, api_tls, sni, injected):
    proxy = start_proxy(rules(localhost_rule(api_tls, idp)))
    request = f"GET /v1 HTTP/1.1\r\nHost: localhost:{api_tls.port}\r\nConnection: close\r\n\r\n"
    answer = raw_https(
        proxy.port, f"localhost:{api_tls.port}", sni, request.encode(), proxy.ca_file
    )
    assert answer.startswith(b"HTTP/1.1 200")
    expected = "Bearer sentinel-token-1" if injected else None
    assert authorizations(api_tls) == [expected]


@pytest.mark.parametrize(
    ("path", "injected"),
    [
        ("/v1/items", True),
        ("/%76%31/items", True),
        ("/v10", False),
        ("/v1/../admin", False),
        ("/v1/%2e%2e/admin", False),
        ("/v1/..%2fadmin", False),
        ("//v1/items", False),
        ("/v1;x=1/items", False),
        ("/V1/items", False),
    ],
)
def test_path_spellings(start_proxy, idp, api, path, injected):
    proxy = start_proxy(
        rules(
            rule(
                "api",
                api,
                idp,
                match={"host": api.host, "port": api.port, "scheme": "http", "path": "/v1"},
            )
        )
    )
    curl(proxy, f"{api.origin}{path}", "--path-as-is")
    assert authorizations(api) == (["Bearer sentinel-token-1"] if injected else [None])


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1", "2130706433"])
def test_host_spellings(start_proxy, idp, api, host):
    proxy = start_proxy(rules(rule("api", api, idp)))
    request = f"GET http://{host}:{api.port}/v1 HTTP/1.1\r\nHost: {host}:{api.port}\r\n\r\n"
    raw_http(proxy.port, request.encode())
    expected = ["Bearer sentinel-token-1"] if host == "127.0.0.1" else [None] * len(api.requests)
    assert authorizations(api) == expected


def test_trace_never_carries_a_token(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp)))
    status, body = curl(proxy, f"{api.origin}/v1", "-X", "TRACE")
    assert status == 200
    assert authorizations(api) == [None]
    assert "sentinel-token" not in body
    assert idp.requests == []


def test_client_authorization_keep(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp, client_authorization="keep")))
    curl(proxy, f"{api.origin}/", "-H", "Authorization: Basic bWluZQ==")
    curl(proxy, f"{api.origin}/")
    assert authorizations(api) == ["Basic bWluZQ==", "Bearer sentinel-token-1"]


def test_token_endpoint_tls_is_verified(start_proxy, server_cert, issuer, api):
    with RecordingServer(issuer, tls=server_cert) as idp_tls:
        proxy = start_proxy(
            rules(
                rule(
                    "untrusted",
                    api,
                    idp_tls,
                    match={
                        "host": api.host,
                        "port": api.port,
                        "scheme": "http",
                        "path": "/untrusted",
                    },
                ),
                rule("trusted", api, idp_tls, ca_file=str(server_cert.ca_file)),
            )
        )
        status, body = curl(proxy, f"{api.origin}/untrusted")
        assert status == 502
        assert "CERTIFICATE_VERIFY_FAILED" in json.loads(body)["message"]
        status, _ = curl(proxy, f"{api.origin}/trusted")
        assert status == 200
    assert authorizations(api) == ["Bearer sentinel-token-1"]


def test_non_bearer_tokens_need_the_rule_to_say_so(start_proxy, issuer, idp, api):
    issuer.token_type = "mac"
    proxy = start_proxy(
        rules(
            rule(
                "plain",
                api,
                idp,
                match={"host": api.host, "port": api.port, "scheme": "http", "path": "/plain"},
            ),
            rule("mac", api, idp, token_type="MAC", client_id="other"),
        )
    )
    status, body = curl(proxy, f"{api.origin}/plain")
    assert status == 502
    assert "'MAC' token, not a Bearer token; set token_type" in json.loads(body)["message"]
    status, _ = curl(proxy, f"{api.origin}/mac")
    assert status == 200
    assert authorizations(api) == ["MAC sentinel-token-2"]


# -- when the token endpoint misbehaves ------------------------------------------------


def test_refresh_ahead_does_not_make_requests_wait(start_proxy, issuer, idp, api):
    """The refresh is held at the endpoint; requests meanwhile go on with the current token."""
    # Usable 6 s (half), refreshed after 25 % = 3 s: requests 2 and 3 have 3 s to get through,
    # room enough on a loaded machine.
    issuer.expires_in = 12
    release = threading.Event()

    def slow_refresh(request: Recorded) -> Reply:
        release.wait(30)
        issuer.reply = None
        return issuer(request)

    proxy = start_proxy(rules(rule("api", api, idp)), options={"oauth_refresh_ahead": "25"})
    curl(proxy, f"{api.origin}/1")
    issuer.reply = slow_refresh
    waited = threading.Event()
    waited.wait(3.1)  # past the refresh point
    curl(proxy, f"{api.origin}/2")  # starts the refresh in the background
    idp.wait_for_requests(2)
    curl(proxy, f"{api.origin}/3")  # the refresh is still held: current token
    release.set()
    proxy.wait_for_line(re.compile(r"token fetched for rule api \(refresh ahead\)"))
    curl(proxy, f"{api.origin}/4")
    assert authorizations(api) == ["Bearer sentinel-token-1"] * 3 + ["Bearer sentinel-token-2"]


def test_failing_refresh_serves_the_usable_token_then_fails_closed(start_proxy, issuer, idp, api):
    issuer.expires_in = 12  # with oauth_expiry_delta=4: usable 8 s; refreshed from 6 s
    proxy = start_proxy(
        rules(rule("api", api, idp)),
        options={"oauth_expiry_delta": "4", "oauth_refresh_ahead": "50"},
    )
    curl(proxy, f"{api.origin}/1")
    issuer.reply = lambda r: Reply(503, {"error": "temporarily_unavailable"})
    threading.Event().wait(6.1)  # past the refresh point, 1.9 s before the end of use
    status, _ = curl(proxy, f"{api.origin}/2")
    assert status == 200
    proxy.wait_for_line(re.compile(r"token fetch for rule api failed \(refresh ahead\)"))
    assert proxy.printed("still using sha256:")
    threading.Event().wait(2.0)  # past the 8 s of use, however late request 2 was
    status, body = curl(proxy, f"{api.origin}/3")
    assert status == 502
    assert json.loads(body)["token_endpoint_error"] == "temporarily_unavailable"
    assert authorizations(api) == ["Bearer sentinel-token-1"] * 2


def test_failures_back_off_and_client_traffic_does_not_reach_the_endpoint(
    start_proxy, issuer, idp, api
):
    issuer.reply = lambda r: Reply(
        503, {"error": "temporarily_unavailable"}, headers={"Retry-After": "60"}
    )
    proxy = start_proxy(rules(rule("api", api, idp)))
    with client(proxy) as http:
        statuses = [http.get(f"{api.origin}/{i}").status_code for i in range(30)]
        last = http.get(f"{api.origin}/last").json()
    assert statuses == [502] * 30
    assert len(idp.requests) == 1
    assert re.search(r"next attempt in (59|60) s", last["message"])
    assert api.requests == []
    assert proxy.printed("transient failure 1, next attempt in 60.0 s")


def test_permanent_failures_are_reported_clearly(start_proxy, issuer, idp, api):
    issuer.reply = lambda r: Reply(
        401, {"error": "invalid_client", "error_description": "Client authentication failed"}
    )
    proxy = start_proxy(rules(rule("api", api, idp, auth_style="header")))
    status, body = curl(proxy, f"{api.origin}/")
    assert status == 502
    assert json.loads(body)["token_endpoint_error_description"] == "Client authentication failed"
    assert proxy.wait_for_line(re.compile(r"permanent failure 1, next attempt in \d+\.\d s"))


def test_slow_drip_token_response_hits_the_deadline(start_proxy, api):
    with DripServer() as drip:
        proxy = start_proxy(rules(rule("api", api, drip)), options={"oauth_token_timeout": "1"})
        status, body = curl(proxy, f"{api.origin}/")
    assert status == 502
    assert "did not answer within 1 s" in json.loads(body)["message"]
    assert api.requests == []


def test_upstream_401_purges_the_token(start_proxy, idp):
    revoked = {"sentinel-token-1"}

    def api_handler(request: Recorded) -> Reply:
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        return Reply(401 if token in revoked else 200, {"token": token})

    with RecordingServer(api_handler) as api:
        proxy = start_proxy(rules(rule("api", api, idp)))
        assert curl(proxy, f"{api.origin}/a")[0] == 401
        assert curl(proxy, f"{api.origin}/b")[0] == 200
        assert curl(proxy, f"{api.origin}/c")[0] == 200
    assert authorizations(api) == ["Bearer sentinel-token-1"] + ["Bearer sentinel-token-2"] * 2
    assert proxy.printed("dropped: upstream answered 401 to GET 127.0.0.1")


def test_retry_on_401_replays_idempotent_requests_once(start_proxy, idp):
    revoked = {"sentinel-token-1"}

    def api_handler(request: Recorded) -> Reply:
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        return Reply(
            401 if token in revoked else 200,
            {"token_ok": token not in revoked, "body": request.body.decode()},
        )

    with RecordingServer(api_handler) as api:
        proxy = start_proxy(rules(rule("api", api, idp, retry_on_401=True)))
        with client(proxy) as http:
            replayed = http.put(f"{api.origin}/x", content=b"payload")
            revoked.add("sentinel-token-2")
            not_idempotent = http.post(f"{api.origin}/y", content=b"payload")
    assert replayed.status_code == 200
    assert replayed.json() == {"token_ok": True, "body": "payload"}
    assert not_idempotent.status_code == 401
    assert [(r.method, r.header("Authorization")) for r in api.requests] == [
        ("PUT", "Bearer sentinel-token-1"),
        ("PUT", "Bearer sentinel-token-2"),
        ("POST", "Bearer sentinel-token-2"),
    ]


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_retry_on_401_replays_through_the_upstream_proxy(start_proxy, idp, server_cert, scheme):
    """In upstream mode the replay takes the way the request took, with the proxy's credentials."""
    revoked = {"sentinel-token-1"}

    def api_handler(request: Recorded) -> Reply:
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        return Reply(401 if token in revoked else 200)

    tls = server_cert if scheme == "https" else None
    with RecordingServer(api_handler, tls=tls) as api:
        # A second mitmdump as the corporate proxy: 407 without the credentials, and it tunnels
        # TLS as it is, as such proxies do.
        corporate = start_proxy(
            rules(rule("elsewhere", idp, idp)),
            options={"proxyauth": "user:pass", "ignore_hosts": ".*"},
        )
        proxy = start_proxy(
            rules(rule("api", api, idp, retry_on_401=True)),
            options={"mode": f"upstream:{corporate.url}", "upstream_auth": "user:pass"},
        )
        with client(proxy) as http:
            replayed = http.get(f"{api.origin}/x")
    assert replayed.status_code == 200
    assert [r.header("Authorization") for r in api.requests] == [
        "Bearer sentinel-token-1",
        "Bearer sentinel-token-2",
    ]
    # The request, then its replay, each on its own connection through the corporate proxy.
    assert corporate.output.count(f"server connect {api.host}:{api.port}") == 2


# -- configuration and secrets ---------------------------------------------------------


def test_secret_file_rotation_is_picked_up(start_proxy, tmp_path, idp):
    """The next fetch after an atomic rename uses the new secret, in the same process."""
    secret_file = tmp_path / "secret"
    secret_file.write_text("first-secret\n")
    revoked: set[str] = set()

    def api_handler(request: Recorded) -> Reply:
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        return Reply(401 if token in revoked else 200)

    with RecordingServer(api_handler) as api:
        creds = {
            "client_secret": None,
            "client_secret_file": str(secret_file),
            "auth_style": "params",
        }
        proxy = start_proxy(rules(rule("api", api, idp, **creds)))
        assert curl(proxy, f"{api.origin}/")[0] == 200
        new = tmp_path / "secret.new"
        new.write_text("second-secret\n")
        new.replace(secret_file)
        revoked.add("sentinel-token-1")  # the old token is revoked with the old secret
        assert curl(proxy, f"{api.origin}/")[0] == 401  # purges it
        assert curl(proxy, f"{api.origin}/")[0] == 200
    assert [r.form["client_secret"] for r in idp.requests] == [["first-secret"], ["second-secret"]]


def test_rules_file_is_reloaded_and_broken_edits_are_ignored(
    start_proxy, tmp_path, idp, api, api_tls
):
    proxy = start_proxy(rules(rule("api", api, idp)))
    rules_file = proxy.rules_file
    curl(proxy, f"{api.origin}/")

    def rewrite(text: str) -> None:
        new = tmp_path / "rules.new"
        new.write_text(text)
        new.replace(rules_file)

    rewrite(rules(rule("api", api, idp), rule("tls", api_tls, idp)))
    proxy.wait_for_line(re.compile(r"2 rule\(s\) loaded"))
    curl(proxy, f"{api_tls.origin}/")
    rewrite("rules:\n  - name: api\n    match: {hots: x}\n")
    proxy.wait_for_line(re.compile(r"did you mean 'host'.*previous rules stay active"))
    curl(proxy, f"{api.origin}/")
    curl(proxy, f"{api_tls.origin}/")
    assert authorizations(api) == ["Bearer sentinel-token-1"] * 2
    assert authorizations(api_tls) == ["Bearer sentinel-token-2"] * 2
    assert len(idp.requests) == 2  # the unchanged rule's token survived both reloads


SECRET = "s3cr3t/+=&sentinel"


def forms_of(value: str, client_id: str) -> list[str]:
    return [
        value,
        quote_plus(value),
        quote(value, safe=""),
        base64.b64encode(value.encode()).decode(),
        base64.b64encode(f"{quote_plus(client_id)}:{quote_plus(value)}".encode()).decode(),
    ]


def test_no_secret_or_token_in_any_output_or_saved_flow(start_proxy, tmp_path, issuer, idp):
    """mitmproxy at its most talkative: every flow in full, debug logs, raw proxy traffic."""
    issuer.prefix = "t0k3n/+="
    saved = tmp_path / "flows.mitm"
    with RecordingServer(lambda r: Reply(body={"ok": True})) as api:
        proxy = start_proxy(
            rules(rule("api", api, idp, client_secret="${API_SECRET}")),
            options={
                "flow_detail": "4",
                "termlog_verbosity": "debug",
                "proxy_debug": "true",
                "save_stream_file": str(saved),
            },
            env={"API_SECRET": SECRET},
        )
        assert curl(proxy, f"{api.origin}/v1")[0] == 200
        proxy.stop()
    token = issuer.issued[0]
    assert authorizations(api) == [f"Bearer {token}"]
    output = proxy.output + saved.read_bytes().decode("latin-1")
    assert "[redacted sha256:" in output
    assert "SendData(server" in output  # the raw traffic was logged, with the token cut out
    for text in forms_of(SECRET, "client-api") + forms_of(token, "x")[:4]:
        assert text not in output


def test_secret_echoed_by_the_endpoint_stays_out_of_the_502(start_proxy, issuer, idp, api):
    issuer.reply = lambda r: Reply(
        400, {"error": "invalid_request", "error_description": f"bad body {r.body.decode()}"}
    )
    proxy = start_proxy(rules(rule("api", api, idp, auth_style="params", client_secret=SECRET)))
    status, body = curl(proxy, f"{api.origin}/")
    assert status == 502
    for text in forms_of(SECRET, "client-api"):
        assert text not in body
        assert text not in proxy.output
    assert "[redacted]" in body


def test_redaction_can_be_turned_off_for_local_debugging(start_proxy, tmp_path, issuer, idp, api):
    saved = tmp_path / "flows.mitm"
    proxy = start_proxy(
        rules(rule("api", api, idp)),
        options={"oauth_redact_flows": "false", "save_stream_file": str(saved)},
    )
    curl(proxy, f"{api.origin}/")
    proxy.stop()
    assert b"Bearer sentinel-token-1" in saved.read_bytes()
    issuer.issued.clear()  # this test means to write the token: skip the fixture's leak check
