"""Token exchanges over HTTP: golang/oauth2's auth-style detection, limits and errors."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import threading
from urllib.parse import quote_plus

import httpx
import pytest

from mitm_oauth.errors import TokenError
from mitm_oauth.model import ClientCertificate, Credentials
from mitm_oauth.oauth.client import MAX_ERROR_FIELD, MAX_EXCERPT, TokenClient, parse_retry_after
from mitm_oauth.observe.exchange import Exchange
from mitm_oauth.secret import Secret, SecretFile
from tests.support.certs import CertificateAuthority, make_client_cert
from tests.support.servers import Recorded, RecordingServer, Reply
from tests.test_token_request import URL, creds, jwt_creds


class FakeEndpoint:
    """Answers token requests in-process and records them."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def client(self, timeout: float = 10.0) -> TokenClient:
        return TokenClient(timeout=timeout, transport=httpx.MockTransport(self))


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"access_token": "tok", "expires_in": 60})


def params_only(request: httpx.Request) -> httpx.Response:
    if "authorization" in request.headers:
        return httpx.Response(401, json={"error": "invalid_client", "error_description": "no"})
    return ok(request)


def fetch(client: TokenClient, c: Credentials):
    return asyncio.run(client.fetch(c))


def test_auto_tries_header_first_and_remembers_it():
    endpoint = FakeEndpoint(ok)
    client = endpoint.client()
    fetch(client, creds())
    fetch(client, creds())
    assert [("authorization" in r.headers) for r in endpoint.requests] == [True, True]


def test_auto_falls_back_to_params_and_remembers_it():
    endpoint = FakeEndpoint(params_only)
    client = endpoint.client()
    assert fetch(client, creds()).access_token.reveal() == "tok"
    fetch(client, creds())
    assert [("authorization" in r.headers) for r in endpoint.requests] == [True, False, False]


def test_auto_remembers_per_token_url_and_client_id():
    endpoint = FakeEndpoint(params_only)
    client = endpoint.client()
    fetch(client, creds())
    fetch(client, creds(client_id=Secret("other")))
    assert [("authorization" in r.headers) for r in endpoint.requests] == [True, False, True, False]


def test_auto_reports_both_failures():
    def refuse(request: httpx.Request) -> httpx.Response:
        where = "header" if "authorization" in request.headers else "body"
        return httpx.Response(401, json={"error": "invalid_client", "error_description": where})

    with pytest.raises(TokenError) as caught:
        fetch(FakeEndpoint(refuse).client(), creds())
    message = str(caught.value)
    assert "in the header:" in message
    assert "'header'" in message
    assert "in the body:" in message
    assert caught.value.error == "invalid_client"
    assert caught.value.error_description == "body"


def test_auto_keeps_the_error_code_when_the_second_answer_has_none():
    """The 502 a client gets names the endpoint's error even when its answer to the second
    attempt is a gateway's HTML page."""

    def refuse(request: httpx.Request) -> httpx.Response:
        if "authorization" in request.headers:
            return httpx.Response(401, json={"error": "invalid_client"})
        return httpx.Response(
            401, text="<html>denied</html>", headers={"content-type": "text/html"}
        )

    with pytest.raises(TokenError) as caught:
        fetch(FakeEndpoint(refuse).client(), creds())
    assert caught.value.as_dict()["token_endpoint_error"] == "invalid_client"
    assert "in the body: token endpoint answered HTTP 401" in caught.value.message


@pytest.mark.parametrize("style", ["header", "params"])
def test_fixed_styles_make_one_attempt(style):
    endpoint = FakeEndpoint(lambda r: httpx.Response(401, json={"error": "invalid_client"}))
    with pytest.raises(TokenError):
        fetch(endpoint.client(), creds(auth_style=style))
    assert len(endpoint.requests) == 1
    assert ("authorization" in endpoint.requests[0].headers) is (style == "header")


def test_redirects_are_not_followed():
    endpoint = FakeEndpoint(lambda r: httpx.Response(302, headers={"Location": "https://x/"}))
    with pytest.raises(TokenError, match="redirect"):
        fetch(endpoint.client(), creds(auth_style="header"))
    assert len(endpoint.requests) == 1


def test_bodies_over_one_mebibyte_are_refused():
    huge = b'{"access_token":"' + b"a" * (1 << 20) + b'"}'
    endpoint = FakeEndpoint(lambda r: httpx.Response(200, content=huge))
    with pytest.raises(TokenError, match="larger than 1048576 bytes"):
        fetch(endpoint.client(), creds(auth_style="header"))


def test_the_whole_exchange_has_a_deadline():
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return ok(request)

    client = TokenClient(timeout=0.2, transport=httpx.MockTransport(slow))
    with pytest.raises(TokenError, match=r"did not answer within 0\.2 s"):
        fetch(client, creds())


def test_unreachable_endpoint_is_a_token_error():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with pytest.raises(TokenError, match="cannot reach the token endpoint"):
        fetch(FakeEndpoint(down).client(), creds(auth_style="header"))


def test_secrets_stay_out_of_errors():
    def echo_back(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=json.dumps({"got": request.content.decode()}))

    with pytest.raises(TokenError) as caught:
        fetch(FakeEndpoint(echo_back).client(), creds(client_secret=Secret("hunter2")))
    assert "hunter2" not in str(caught.value)


def test_auto_does_not_retry_in_the_body_when_nothing_answered():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    endpoint = FakeEndpoint(down)
    with pytest.raises(TokenError, match=r"cannot reach the token endpoint https://idp\.example/"):
        fetch(endpoint.client(), creds())
    assert len(endpoint.requests) == 1


def test_unreachable_endpoint_message_leaves_out_the_query():
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with pytest.raises(TokenError) as caught:
        fetch(FakeEndpoint(down).client(), creds(token_url=URL + "?key=hidden"))
    assert "hidden" not in str(caught.value)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_auto_does_not_retry_in_the_body_after_a_transient_failure(status):
    endpoint = FakeEndpoint(lambda r: httpx.Response(status, headers={"Retry-After": "7"}))
    with pytest.raises(TokenError) as caught:
        fetch(endpoint.client(), creds())
    assert len(endpoint.requests) == 1
    assert caught.value.retry_after == 7


def test_secrets_echoed_by_the_endpoint_are_scrubbed():
    secret = "s3cr3t/+=&x"

    def echo_back(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            json={
                "error": "invalid_client",
                "error_description": f"got {request.headers.get('authorization')} and "
                f"{request.content.decode()} and {secret}",
            },
        )

    with pytest.raises(TokenError) as caught:
        fetch(FakeEndpoint(echo_back).client(), creds(client_secret=Secret(secret)))
    text = str(caught.value)
    assert secret not in text
    assert "s3cr3t%2F%2B%3D%26x" not in text
    assert base64.b64encode(f"my+client:{quote_plus(secret)}".encode()).decode() not in text
    assert "[redacted]" in text


def test_secret_file_problems_are_token_errors(tmp_path):
    missing = SecretFile(str(tmp_path / "gone"))
    with pytest.raises(TokenError, match="client credentials unavailable: cannot read") as caught:
        fetch(FakeEndpoint(ok).client(), creds(client_secret=missing))
    assert caught.value.permanent


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),
        ("soon", None),
        (None, None),
        ("", None),
    ],
)
def test_retry_after(value, expected):
    assert parse_retry_after(value, now=1_700_000_000) == expected


def test_retry_after_http_date_in_the_future():
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412420) == 60


def test_exchanges_shown_to_operators_carry_no_assertion_or_secret_header():
    seen: list[Exchange] = []
    c = dataclasses.replace(
        jwt_creds("client_secret_jwt"),
        request_format="json",
        token_headers=(("X-Api-Key", "sentinel-header-value"),),
    )
    endpoint = FakeEndpoint(ok)
    client = TokenClient(
        transport=httpx.MockTransport(endpoint), observer=lambda _, e: seen.append(e)
    )
    fetch(client, c)
    ((request,), (exchange,)) = endpoint.requests, seen
    assertion = json.loads(request.content)["client_assertion"]
    shown = json.loads(exchange.request_body)
    assert shown["client_assertion"] == "[redacted]"
    assert shown["client_id"] == "my client"
    assert ("X-Api-Key", "[redacted]") in exchange.request_headers
    assert client.redactor.redact(f"x {assertion} y") == "x [redacted] y"


def test_a_renewed_certificate_does_not_cut_off_an_exchange_in_flight(tmp_path, server_cert):
    ca = CertificateAuthority("client CA")
    current = make_client_cert(tmp_path, "client-a", ca)
    renewed = make_client_cert(tmp_path, "client-b", ca)
    release = threading.Event()

    def answer(request: Recorded) -> Reply:
        if b"slow" in request.body:
            release.wait(timeout=10)
        return Reply(body={"access_token": f"tok-{request.client_cert}", "expires_in": 60})

    async def scenario(endpoint: RecordingServer) -> list[str]:
        certificate = ClientCertificate(str(current.cert_file), str(current.key_file))
        slow, fast = (
            creds(
                token_url=f"{endpoint.origin}/token",
                ca_file=str(server_cert.ca_file),
                client_certificate=certificate,
                scopes=(scope,),
            )
            for scope in ("slow", "fast")
        )
        client = TokenClient()
        first = asyncio.create_task(client.fetch(slow))
        await asyncio.to_thread(endpoint.wait_for_requests, 1)  # in flight on the first pool
        for suffix in (".pem", ".key"):
            os.replace(renewed.cert_file.with_suffix(suffix), current.cert_file.with_suffix(suffix))
        second = await client.fetch(fast)  # a new pool, for the renewed certificate
        release.set()
        tokens = [(await first).access_token.reveal(), second.access_token.reveal()]
        await client.aclose()
        return tokens

    client_ca = ca.write(tmp_path / "client-ca.pem")
    with RecordingServer(answer, tls=server_cert, client_ca=client_ca) as endpoint:
        assert asyncio.run(scenario(endpoint)) == ["tok-client-a", "tok-client-b"]


@pytest.mark.parametrize("cut_inside", [1, 5, 20])
def test_error_fields_are_scrubbed_then_cut_short(cut_inside):
    """A secret echoed across the 500th character leaves no part of itself behind."""
    secret = "sentinel-secret-0123456789abcdef"
    pad = "." * (MAX_ERROR_FIELD - len(secret) + cut_inside)

    def echo(request: httpx.Request) -> httpx.Response:
        description = pad + secret + "d" * 1000
        return httpx.Response(400, json={"error": "x", "error_description": description})

    client = FakeEndpoint(echo).client()
    with pytest.raises(TokenError) as caught:
        fetch(client, creds(auth_style="params", client_secret=Secret(secret)))
    description = caught.value.error_description
    assert description == pad + "[redacted]" + "d" * (MAX_ERROR_FIELD - len(pad) - 10) + "…"
    assert len(description) == MAX_ERROR_FIELD + 1


def test_a_non_json_error_body_is_kept_as_a_scrubbed_excerpt():
    """A gateway's page says what went wrong; the secret it echoes across the cut does not."""
    secret = "sentinel-secret-0123456789abcdef"

    def page(request: httpx.Request) -> httpx.Response:
        text = f"<html>\n  <b>Access   denied</b> {'x' * 150} {secret} {'y' * 5000}</html>"
        return httpx.Response(403, text=text, headers={"content-type": "text/html"})

    with pytest.raises(TokenError) as caught:
        fetch(FakeEndpoint(page).client(), creds(auth_style="params", client_secret=Secret(secret)))
    excerpt = caught.value.body_excerpt
    assert excerpt is not None
    assert excerpt.startswith("<html> <b>Access denied</b> xxx")
    assert len(excerpt) == MAX_EXCERPT + 1
    assert excerpt.endswith("…")
    assert "sentinel" not in excerpt
    assert "[redacted]" in excerpt
    assert f"body={excerpt!r}" in str(caught.value)


def test_non_standard_error_members_are_kept_scrubbed_and_bounded():
    """Azure's support asks for trace_id and correlation_id; an echoed secret is cut out."""
    secret = "sentinel-secret-0123456789abcdef"
    answer = {
        "error": "invalid_client",
        "error_codes": [7000215],
        "trace_id": "5f1c-trace",
        "correlation_id": f"echo {secret}",
        "timestamp": "z" * 1000,
    }
    endpoint = FakeEndpoint(lambda r: httpx.Response(401, json=answer))
    with pytest.raises(TokenError) as caught:
        fetch(endpoint.client(), creds(auth_style="params", client_secret=Secret(secret)))
    extra = dict(caught.value.extra)
    assert extra["error_codes"] == "[7000215]"
    assert extra["trace_id"] == "5f1c-trace"
    assert extra["correlation_id"] == "echo [redacted]"
    assert extra["timestamp"] == "z" * MAX_EXCERPT + "…"
    assert "trace_id='5f1c-trace'" in str(caught.value)
    assert "error" not in extra
