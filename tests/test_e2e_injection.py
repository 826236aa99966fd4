"""End to end: real clients → real mitmdump with the addon → real upstreams and token endpoint.

Every test's proxy output is checked for the client secret and every issued
token by the `start_proxy` fixture. mitmdump runs with HTTP(S)_PROXY pointing
at a dead port: the token client must ignore them, or every fetch would fail.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import CLIENT_SECRET, async_client, client, curl, rule, rules
from tests.support.proxy import Mitmdump
from tests.support.servers import Recorded, Reply


def basic_of(request: Recorded) -> str | None:
    return request.header("Authorization")


def test_http_request_gets_token_and_accept(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp, scopes="read, write")))
    status, _body = curl(proxy, f"{api.origin}/v1/items?x=1", "-H", "Accept: text/html")
    assert status == 200
    (seen,) = api.requests
    assert seen.header("Authorization") == "Bearer sentinel-token-1"
    assert seen.header("Accept") == "application/json"
    assert seen.path == "/v1/items?x=1"
    (token_request,) = idp.requests
    assert token_request.form == {"grant_type": ["client_credentials"], "scope": ["read write"]}
    assert re.search(
        r"token fetched for rule api \(first use\) in \d+ ms: sha256:[0-9a-f]{8}", proxy.output
    )


def test_https_request_through_connect_gets_token(start_proxy, idp, api_tls):
    proxy = start_proxy(rules(rule("api", api_tls, idp)))
    status, _ = curl(proxy, f"{api_tls.origin}/v1/items")
    assert status == 200
    with client(proxy) as http:
        assert http.get(f"{api_tls.origin}/v2").status_code == 200
    assert [r.header("Authorization") for r in api_tls.requests] == ["Bearer sentinel-token-1"] * 2
    assert len(idp.requests) == 1


def test_client_authorization_is_replaced(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp)))
    curl(proxy, f"{api.origin}/", "-H", "Authorization: Basic dXNlcjpwYXNz")
    assert api.requests[0].header("Authorization") == "Bearer sentinel-token-1"


def test_accept_null_leaves_client_accept_alone(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp, accept=None)))
    curl(proxy, f"{api.origin}/", "-H", "Accept: text/csv")
    assert api.requests[0].header("Accept") == "text/csv"
    assert api.requests[0].header("Authorization") == "Bearer sentinel-token-1"


def test_non_matching_traffic_is_untouched(start_proxy, idp, api, api_tls):
    proxy = start_proxy(
        rules(
            rule(
                "only-v1-get",
                api_tls,
                idp,
                match={
                    "host": api_tls.host,
                    "port": api_tls.port,
                    "path": "/v1",
                    "methods": ["GET"],
                },
            ),
            # Same host and port as `api`, but the default scheme https: plain http never matches.
            rule("tls-only", api, idp, match={"host": api.host, "port": api.port}),
        )
    )
    with client(proxy) as http:
        http.get(f"{api_tls.origin}/v10", headers={"Accept": "text/plain"})
        http.post(f"{api_tls.origin}/v1/x", headers={"Authorization": "Basic mine"})
        http.get(f"{api.origin}/v1/x")
        http.get(f"{api_tls.origin}/v1/x")
    seen = api_tls.requests + api.requests
    assert [r.header("Authorization") for r in seen] == [
        None,
        "Basic mine",
        "Bearer sentinel-token-1",
        None,
    ]
    assert seen[0].header("Accept") == "text/plain"
    assert len(idp.requests) == 1


def test_concurrent_cold_start_makes_one_token_request(start_proxy, issuer, idp, api_tls):
    issuer.reply = lambda r: Reply(body={"access_token": "sentinel-token-slow"}, delay=0.5)
    issuer.issued.append("sentinel-token-slow")
    proxy = start_proxy(rules(rule("api", api_tls, idp)))

    async def burst() -> list[int]:
        limits = {"limits": __import__("httpx").Limits(max_connections=50)}
        async with async_client(proxy, **limits) as http:
            responses = await asyncio.gather(
                *(http.get(f"{api_tls.origin}/item/{i}") for i in range(50))
            )
        return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 50
    assert len(idp.requests) == 1
    assert {r.header("Authorization") for r in api_tls.requests} == {"Bearer sentinel-token-slow"}
    assert len(api_tls.requests) == 50


def test_expired_token_is_refreshed_once(start_proxy, issuer, idp, api):
    # expires_in 8 s: the 10 s early expiry is capped at half the lifetime, so reuse for 4 s
    # from when the proxy asked for the token: time enough for two requests on a loaded machine.
    issuer.expires_in = 8
    proxy = start_proxy(rules(rule("api", api, idp)))
    curl(proxy, f"{api.origin}/a")
    # The proxy asked for the token before it answered /a, so the token is out of use 4 s from
    # now at the latest (both processes read the same monotonic clock). Counting from before
    # /a instead let /c, on a loaded machine, still get the first token.
    expired_by = time.monotonic() + 4
    curl(proxy, f"{api.origin}/b")
    assert len(idp.requests) == 1
    time.sleep(max(0.0, expired_by - time.monotonic()))  # nothing to wait on: time must pass
    curl(proxy, f"{api.origin}/c")
    curl(proxy, f"{api.origin}/d")
    assert len(idp.requests) == 2
    assert [r.header("Authorization") for r in api.requests] == [
        "Bearer sentinel-token-1",
        "Bearer sentinel-token-1",
        "Bearer sentinel-token-2",
        "Bearer sentinel-token-2",
    ]
    assert proxy.printed("token fetched for rule api (expired)")


def test_auth_style_header(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp, auth_style="header")))
    curl(proxy, f"{api.origin}/")
    (request,) = idp.requests
    assert basic_of(request) == "Basic Y2xpZW50LWFwaTpzZW50aW5lbC1jbGllbnQtc2VjcmV0LTdmM2E="
    assert "client_secret" not in request.form


def test_auth_style_params(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp, auth_style="params")))
    curl(proxy, f"{api.origin}/")
    (request,) = idp.requests
    assert basic_of(request) is None
    assert request.form["client_id"] == ["client-api"]
    assert request.form["client_secret"] == [CLIENT_SECRET]


def test_auth_style_auto_falls_back_and_remembers(start_proxy, issuer, idp, api, api_tls):
    def body_credentials_only(request: Recorded) -> Reply:
        if basic_of(request):
            return Reply(401, {"error": "invalid_client", "error_description": "use the body"})
        return issuer.issue(request)

    issuer.reply = body_credentials_only
    shared = {"client_id": "shared-client"}
    proxy = start_proxy(
        rules(
            rule("one", api, idp, scopes="a", **shared),
            rule("two", api_tls, idp, scopes="b", **shared),
        )
    )
    curl(proxy, f"{api.origin}/")
    curl(proxy, f"{api_tls.origin}/")
    assert [basic_of(r) is not None for r in idp.requests] == [True, False, False]
    assert [r.header("Authorization") for r in api.requests + api_tls.requests] == [
        "Bearer sentinel-token-1",
        "Bearer sentinel-token-2",
    ]


def test_rules_with_equal_credentials_share_one_token(start_proxy, idp, api, api_tls):
    same = {"client_id": "shared-client", "scopes": "a,b"}
    proxy = start_proxy(rules(rule("one", api, idp, **same), rule("two", api_tls, idp, **same)))
    curl(proxy, f"{api.origin}/")
    curl(proxy, f"{api_tls.origin}/")
    assert len(idp.requests) == 1
    assert proxy.printed("token fetched for rule one, two (first use)")


def test_krakend_auth0_example(start_proxy, issuer, idp, api_tls):
    """The seed document's Auth0 config: credentials and audience in endpoint_params."""

    def auth0(request: Recorded) -> Reply:
        form = request.form
        if form.get("client_id") != ["YOUR-CLIENT-ID"] or form.get("client_secret") != [
            CLIENT_SECRET
        ]:
            return Reply(401, {"error": "access_denied", "error_description": "Unauthorized"})
        if form.get("audience") != ["YOUR-AUDIENCE"]:
            return Reply(403, {"error": "access_denied", "error_description": "No audience"})
        return issuer.issue(request)

    issuer.reply = auth0
    proxy = start_proxy(
        f"""\
        rules:
          - name: backend
            match: {{host: {api_tls.host}, port: {api_tls.port}, path: /backend}}
            client_id: YOUR-CLIENT-ID
            client_secret: ${{AUTH0_SECRET}}
            token_url: {idp.origin}/token_endpoint
            endpoint_params:
              client_id: [YOUR-CLIENT-ID]
              client_secret: ["${{AUTH0_SECRET}}"]
              audience: [YOUR-AUDIENCE]
            accept: application/json
        """,
        env={"AUTH0_SECRET": CLIENT_SECRET},
    )
    status, _ = curl(proxy, f"{api_tls.origin}/backend", "-H", "Accept: */*")
    assert status == 200
    (seen,) = api_tls.requests
    assert seen.header("Authorization") == "Bearer sentinel-token-1"
    assert seen.header("Accept") == "application/json"
    assert len(idp.requests) == 1


def test_token_endpoint_down_gives_502_and_nothing_goes_upstream(start_proxy, idp, api, api_tls):
    closed_port = idp.port
    idp.__exit__()  # the endpoint is gone: connections are refused
    proxy = start_proxy(rules(rule("api", api_tls, idp)))
    with client(proxy) as http:
        response = http.get(f"{api_tls.origin}/v1")
        streamed = http.post(f"{api_tls.origin}/upload", content=iter([b"x" * 100_000]))
    assert response.status_code == 502
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["error"] == "token_unavailable"
    assert body["rule"] == "api"
    assert "cannot reach the token endpoint" in body["message"]
    assert streamed.status_code == 502
    assert api_tls.requests == []
    assert f"127.0.0.1:{closed_port}" in body["message"]
    assert proxy.printed("token fetch for rule api failed (first use)")


def test_token_endpoint_error_reaches_the_client(start_proxy, issuer, idp, api):
    issuer.reply = lambda r: Reply(
        401, {"error": "invalid_client", "error_description": "Bad client credentials"}
    )
    proxy = start_proxy(rules(rule("api", api, idp, auth_style="header")))
    status, body = curl(proxy, f"{api.origin}/")
    assert status == 502
    details = json.loads(body)
    assert details["token_endpoint_status"] == 401
    assert details["token_endpoint_error"] == "invalid_client"
    assert details["token_endpoint_error_description"] == "Bad client credentials"
    assert CLIENT_SECRET not in body
    assert api.requests == []
    assert proxy.printed("'invalid_client'")


def test_streamed_request_bodies_carry_the_token(start_proxy, idp, api_tls):
    proxy = start_proxy(rules(rule("api", api_tls, idp)), options={"stream_large_bodies": "1k"})
    with client(proxy) as http:
        response = http.post(f"{api_tls.origin}/upload", content=b"y" * 200_000)
    assert response.status_code == 200
    (seen,) = api_tls.requests
    assert len(seen.body) == 200_000
    assert seen.header("Authorization") == "Bearer sentinel-token-1"


def test_invalid_rules_stop_mitmdump_with_a_clear_message(tmp_path: Path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "rules:\n  - name: billing\n    match: {host: api.example.com, prot: 443}\n"
    )
    proxy = Mitmdump(rules_file, tmp_path / "confdir")
    assert proxy.run_to_exit() != 0
    assert (
        f"{rules_file}: rule 'billing' (#1): field 'match.prot': unknown key 'prot' "
        "(did you mean 'port'?)"
    ) in proxy.output
    assert "Traceback" not in proxy.output


def test_missing_rules_file_stops_mitmdump(tmp_path: Path):
    proxy = Mitmdump(tmp_path / "nope.yaml", tmp_path / "confdir")
    assert proxy.run_to_exit() != 0
    assert proxy.printed(f"{tmp_path / 'nope.yaml'}: file not found")
    assert "Traceback" not in proxy.output


def test_unset_variable_stops_mitmdump_naming_it(tmp_path: Path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "rules:\n  - name: billing\n    match: {host: a.example.com}\n"
        "    token_url: https://idp.example.com/token\n"
        "    client_id: x\n    client_secret: ${BILLING_SECRET}\n"
    )
    proxy = Mitmdump(rules_file, tmp_path / "confdir")
    assert proxy.run_to_exit() != 0
    assert proxy.printed("field 'client_secret': environment variable BILLING_SECRET is not set")
    assert "Traceback" not in proxy.output


def test_example_rules_file_starts(tmp_path: Path):
    proxy = Mitmdump(
        Path(__file__).parents[1] / "rules.yaml",
        tmp_path / "confdir",
        env={"BILLING_CLIENT_ID": "id", "BILLING_CLIENT_SECRET": CLIENT_SECRET},
    )
    with proxy:
        assert proxy.port > 0
    assert proxy.printed("1 rule(s) loaded")
    assert isinstance(proxy, Mitmdump)


def curl_http2(proxy, url: str, *args: str) -> tuple[int, str]:
    """curl speaking HTTP/2 to mitmproxy inside the tunnel (with lazy server connections,
    mitmproxy offers the client HTTP/2 whatever the upstream speaks)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    version = subprocess.run(["curl", "-V"], capture_output=True, text=True, check=False)
    if "HTTP2" not in version.stdout.split():
        pytest.skip("curl was built without HTTP/2")
    return curl(proxy, url, "--http2", *args)


def test_http2_requests_get_the_token(start_proxy, idp, api_tls):
    # The upstream speaks HTTP/1.1 only: mitmproxy translates.
    proxy = start_proxy(rules(rule("api", api_tls, idp)), options={"connection_strategy": "lazy"})
    status, _ = curl_http2(proxy, f"{api_tls.origin}/v1/items")
    assert status == 200
    assert proxy.printed(f"GET {api_tls.origin}/v1/items HTTP/2.0")
    assert api_tls.requests[0].header("Authorization") == "Bearer sentinel-token-1"


def test_http2_authority_naming_another_host_gets_no_token(start_proxy, idp, api_tls):
    proxy = start_proxy(rules(rule("api", api_tls, idp)), options={"connection_strategy": "lazy"})
    # Tunnelled to the API, but its :authority (curl's Host header in HTTP/2) names another host.
    status, _ = curl_http2(proxy, f"{api_tls.origin}/v1/items", "-H", "Host: other.example")
    assert status == 200
    assert proxy.printed(f"GET {api_tls.origin}/v1/items HTTP/2.0")
    assert proxy.printed("no token for a request to 127.0.0.1")
    (seen,) = api_tls.requests  # passed on as the client sent it, without a token
    assert seen.header("Host") == "other.example"
    assert seen.header("Authorization") is None
    assert idp.requests == []
