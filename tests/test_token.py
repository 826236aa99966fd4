"""Token responses: every edge of RFC 6749 §5.1/§5.2 as golang/oauth2 reads them, and stricter."""

from __future__ import annotations

import json

import pytest

from mitm_oauth.errors import TokenError
from mitm_oauth.oauth.response import MAX_EXPIRES_IN, parse_token_response

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
FORM_BODY = b"access_token=abc&token_type=bearer&expires_in=60&scope=a+b"


def parse_json(body: object, status: int = 200):
    return parse_token_response(status, JSON, json.dumps(body).encode())


def test_plain_bearer_token():
    token = parse_json({"access_token": "abc", "token_type": "bearer", "expires_in": 3600})
    assert token.access_token.reveal() == "abc"
    assert token.token_type == "Bearer"
    assert token.expires_in == 3600


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (FORM, FORM_BODY),
        ("text/plain; charset=utf-8", FORM_BODY),
        (
            "application/json; charset=utf-8",
            b'{"access_token":"abc","expires_in":"60","scope":"a b"}',
        ),
        ("", b'{"access_token":"abc","expires_in":60,"scope":"a b"}'),
    ],
)
def test_json_form_and_text_bodies(content_type, body):
    token = parse_token_response(200, content_type, body)
    assert token.access_token.reveal() == "abc"
    assert token.token_type == "Bearer"
    assert token.expires_in == 60
    assert token.scope == "a b"


@pytest.mark.parametrize(
    ("token_type", "expected"),
    [
        ("bearer", "Bearer"),
        ("BEARER", "Bearer"),
        ("Bearer", "Bearer"),
        ("", "Bearer"),
        (None, "Bearer"),
        ("mac", "MAC"),
        ("basic", "Basic"),
        ("DPoP", "DPoP"),
    ],
)
def test_token_type_is_normalised(token_type, expected):
    body = {"access_token": "abc"}
    if token_type is not None:
        body["token_type"] = token_type
    assert parse_json(body).token_type == expected


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        (3600, 3600),
        ("3600", 3600),
        (" 60 ", 60),
        (59.9, 59),
        ("1e3", 1000),
        (None, None),
        ("", None),
        (0, None),
        ("0", None),
        (2**40, MAX_EXPIRES_IN),
    ],
)
def test_expires_in_forms(expires_in, expected):
    body = {"access_token": "abc", "expires_in": expires_in}
    assert parse_json(body).expires_in == expected


def test_missing_expires_in():
    assert parse_json({"access_token": "abc"}).expires_in is None


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"access_token":"abc","expires_in":true}', "boolean"),
        (b'{"access_token":"abc","expires_in":"soon"}', "not a number"),
        (b'{"access_token":"abc","expires_in":{}}', "not a number"),
        (b'{"access_token":"abc","expires_in":[1]}', "not a number"),
        (b'{"access_token":"abc","expires_in":-5}', "negative"),
        (b'{"access_token":"abc","expires_in":"NaN"}', "finite"),
        (b'{"access_token":"abc","expires_in":"Infinity"}', "finite"),
        (b'{"access_token":"abc","expires_in":1e999}', "finite"),
        (b'{"access_token":"abc","expires_in":NaN}', "not a JSON object"),
    ],
)
def test_bad_expires_in_is_an_error_not_a_guess(raw, words):
    with pytest.raises(TokenError, match=words):
        parse_token_response(200, JSON, raw)


@pytest.mark.parametrize(
    ("status", "content_type", "raw", "words"),
    [
        (200, JSON, b"{}", "missing access_token"),
        (200, JSON, b'{"access_token":""}', "missing access_token"),
        (200, JSON, b'{"access_token":42}', "missing access_token"),
        (200, JSON, b"[]", "not a JSON object"),
        (200, JSON, b'{"access_token":"abc"', "not a JSON object"),
        (200, "text/html", b"<html>login</html>", "text/html, 18 bytes"),
        (200, JSON, b"\xff\xfe", "not a JSON object"),
        (200, JSON, b'{"access_token":"a b"}', "not allowed in a header"),
        (200, JSON, b'{"access_token":"a\\r\\nX-Evil: 1"}', "not allowed in a header"),
        (200, JSON, b'{"access_token":"abc","token_type":"Bea rer"}', "authentication scheme"),
        (200, JSON, b'{"access_token":"abc","token_type":7}', "authentication scheme"),
        (500, "text/html", b"<html>oops</html>", "HTTP 500"),
        (302, JSON, b"", "HTTP 302"),
    ],
)
def test_failures(status, content_type, raw, words):
    with pytest.raises(TokenError, match=words) as caught:
        parse_token_response(status, content_type, raw)
    assert caught.value.status == status


@pytest.mark.parametrize("status", [200, 400, 401])
def test_rfc6749_error_fields_are_carried(status):
    body = {
        "error": "invalid_client",
        "error_description": "Bad client credentials",
        "error_uri": "https://idp.example/errors#invalid_client",
    }
    with pytest.raises(TokenError) as caught:
        parse_json(body, status)
    error = caught.value
    assert error.error == "invalid_client"
    assert error.error_description == "Bad client credentials"
    assert error.error_uri == "https://idp.example/errors#invalid_client"
    assert error.as_dict()["token_endpoint_error"] == "invalid_client"
    assert "'invalid_client'" in str(error)


def test_form_encoded_error():
    with pytest.raises(TokenError) as caught:
        parse_token_response(400, FORM, b"error=invalid_scope&error_description=nope")
    assert caught.value.error == "invalid_scope"
    assert caught.value.error_description == "nope"


def test_error_messages_never_quote_the_body():
    raw = b'{"access_token":"leaky-token", "expires_in": "soon"'
    with pytest.raises(TokenError) as caught:
        parse_token_response(200, JSON, raw)
    assert "leaky-token" not in str(caught.value)
    with pytest.raises(TokenError) as caught:
        parse_token_response(200, JSON, b'{"access_token":"leaky token"}')
    assert "leaky" not in str(caught.value)
    with pytest.raises(TokenError) as caught:  # a 2xx is never excerpted: it may hold a token
        parse_token_response(200, "text/html", b"<p>access_token=leaky-token</p>")
    assert "leaky" not in str(caught.value)
    assert caught.value.body_excerpt is None


def test_repr_of_a_token_hides_it():
    token = parse_json({"access_token": "super-secret-token"})
    assert "super-secret-token" not in repr(token)
    assert "super-secret-token" not in str(token.access_token)
    assert f"{token.access_token}".startswith("Secret(sha256:")
