"""The token request: each auth style's headers and body, form or JSON."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest

from mitm_oauth.errors import TokenError
from mitm_oauth.model import AssertionSettings, AuthStyle, Credentials
from mitm_oauth.oauth.request import ClientAuth, basic_credentials, token_request
from mitm_oauth.secret import Secret
from tests.support.certs import new_key, write_key

URL = "https://idp.example/token"


def creds(**kw: object) -> Credentials:
    values: dict[str, object] = {
        "token_url": URL,
        "client_id": Secret("my client"),
        "client_secret": Secret("s&cr:t+/="),
    } | kw
    return Credentials(**values)  # type: ignore[arg-type]


def request_of(c: Credentials, style: str) -> tuple[dict[str, str], bytes]:
    request = token_request(c, ClientAuth.of(c), AuthStyle(style))
    return request.headers, request.body


def form_of(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode(), keep_blank_values=True)


def test_basic_credentials_are_form_encoded_first():
    # RFC 6749 §2.3.1: form-urlencode id and secret, then Basic-encode the pair.
    value = basic_credentials("my client", "s&cr:t+/=")
    decoded = base64.b64decode(value.removeprefix("Basic ")).decode()
    assert decoded == "my+client:s%26cr%3At%2B%2F%3D"


def test_header_style_request():
    headers, body = request_of(
        creds(scopes=("read", "write"), endpoint_params=(("audience", ("a", "b")),)), "header"
    )
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["Accept"] == "application/json"
    assert headers["Authorization"] == basic_credentials("my client", "s&cr:t+/=")
    assert form_of(body) == {
        "grant_type": ["client_credentials"],
        "scope": ["read write"],
        "audience": ["a", "b"],
    }


def test_params_style_request_puts_credentials_in_the_body():
    headers, body = request_of(creds(), "params")
    assert "Authorization" not in headers
    assert form_of(body) == {
        "grant_type": ["client_credentials"],
        "client_id": ["my client"],
        "client_secret": ["s&cr:t+/="],
    }


def test_params_style_replaces_credentials_from_endpoint_params():
    auth0 = creds(endpoint_params=(("client_id", ("my client",)), ("client_secret", ("x",))))
    _, body = request_of(auth0, "params")
    assert form_of(body)["client_id"] == ["my client"]
    assert form_of(body)["client_secret"] == ["s&cr:t+/="]
    # In the header style they are sent as configured, as KrakenD does.
    _, body = request_of(auth0, "header")
    assert form_of(body)["client_secret"] == ["x"]


def test_no_scope_parameter_when_scopes_are_empty():
    _, body = request_of(creds(), "header")
    assert "scope" not in form_of(body)


# -- beyond shared secrets --------------------------------------------------------------

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LONG_SECRET = "a-client-secret-long-enough-for-hs256!"


def jwt_creds(style: str, **settings: object) -> Credentials:
    algorithm = settings.pop("algorithm", "HS256" if style == "client_secret_jwt" else "RS256")
    secret = Secret(LONG_SECRET) if style == "client_secret_jwt" else None
    return creds(
        auth_style=style,
        client_secret=secret,
        assertion=AssertionSettings(algorithm=algorithm, **settings),  # type: ignore[arg-type]
    )


def decoded(body: bytes, key: object, algorithm: str, audience: str = URL) -> dict[str, object]:
    (value,) = form_of(body)["client_assertion"]
    return jwt.decode(value, key, algorithms=[algorithm], audience=audience)  # type: ignore[arg-type]


def test_client_secret_jwt_sends_a_signed_assertion_and_no_secret():
    c = jwt_creds("client_secret_jwt")
    request = token_request(c, ClientAuth.of(c), AuthStyle("client_secret_jwt"), now=1_000_000)
    form = form_of(request.body)
    assert "Authorization" not in request.headers
    assert "client_secret" not in form
    assert LONG_SECRET not in request.body.decode()
    assert form["client_id"] == ["my client"]
    assert form["client_assertion_type"] == [ASSERTION_TYPE]
    (assertion,) = form["client_assertion"]
    assert request.secrets == (assertion,)
    header = jwt.get_unverified_header(assertion)
    assert header == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(
        assertion,
        LONG_SECRET,
        algorithms=["HS256"],
        audience=URL,
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["iss"] == claims["sub"] == "my client"
    assert (claims["iat"], claims["exp"]) == (1_000_000, 1_000_060)
    assert len(str(claims["jti"])) >= 22


@pytest.mark.parametrize(
    ("algorithm", "kind"), [("RS256", "rsa"), ("PS256", "rsa"), ("ES256", "ec"), ("ES384", "ec384")]
)
def test_private_key_jwt_signs_with_the_key(tmp_path: Path, algorithm: str, kind: str):
    key = new_key(kind)
    key_file = write_key(tmp_path / "key.pem", key)
    c = jwt_creds(
        "private_key_jwt",
        algorithm=algorithm,
        private_key_file=str(key_file),
        key_id="key-1",
        audience="https://idp.example",
        lifetime=30,
    )
    request = token_request(c, ClientAuth.of(c), AuthStyle("private_key_jwt"))
    (assertion,) = form_of(request.body)["client_assertion"]
    assert jwt.get_unverified_header(assertion)["kid"] == "key-1"
    claims = decoded(request.body, key.public_key(), algorithm, audience="https://idp.example")
    assert claims["exp"] - claims["iat"] == 30
    assert claims["iss"] == claims["sub"] == "my client"


def test_every_request_has_a_fresh_assertion():
    c = jwt_creds("client_secret_jwt")
    first, second = (
        token_request(c, ClientAuth.of(c), AuthStyle("client_secret_jwt")) for _ in range(2)
    )
    one = decoded(first.body, LONG_SECRET, "HS256")
    two = decoded(second.body, LONG_SECRET, "HS256")
    assert one["jti"] != two["jti"]


def test_a_rotated_key_that_went_bad_is_a_token_error(tmp_path: Path):
    key_file = write_key(tmp_path / "key.pem", new_key("rsa"))
    c = jwt_creds("private_key_jwt", private_key_file=str(key_file))
    key_file.write_text("garbage")
    with pytest.raises(TokenError, match=r"cannot sign the client assertion: .*not a PEM"):
        token_request(c, ClientAuth.of(c), AuthStyle("private_key_jwt"))


def test_endpoint_params_cannot_override_the_assertion():
    c = dataclasses.replace(
        jwt_creds("client_secret_jwt"),
        endpoint_params=(("client_assertion", ("forged",)), ("resource", ("r",))),
    )
    form = form_of(token_request(c, ClientAuth.of(c), AuthStyle("client_secret_jwt")).body)
    assert form["client_assertion"] != ["forged"]
    assert form["resource"] == ["r"]


@pytest.mark.parametrize("style", ["tls_client_auth", "self_signed_tls_client_auth"])
def test_tls_client_auth_names_the_client_in_the_body(style: str):
    c = creds(auth_style=style, client_secret=None)
    request = token_request(c, ClientAuth.of(c), AuthStyle(style))
    assert "Authorization" not in request.headers
    assert form_of(request.body) == {
        "grant_type": ["client_credentials"],
        "client_id": ["my client"],
    }
    assert request.secrets == ()


def test_json_request_format():
    c = creds(
        request_format="json",
        scopes=("a", "b"),
        endpoint_params=(("audience", ("x",)), ("resource", ("r1", "r2"))),
    )
    request = token_request(c, ClientAuth.of(c), AuthStyle("params"))
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {
        "grant_type": "client_credentials",
        "scope": "a b",
        "audience": "x",
        "resource": ["r1", "r2"],
        "client_id": "my client",
        "client_secret": "s&cr:t+/=",
    }


def test_token_headers_are_sent_and_treated_as_secrets():
    c = creds(token_headers=(("X-Api-Key", "key-123456"),))
    request = token_request(c, ClientAuth.of(c), AuthStyle("header"))
    assert request.headers["X-Api-Key"] == "key-123456"
    assert request.headers["Authorization"].startswith("Basic ")
    assert "key-123456" in request.secrets
