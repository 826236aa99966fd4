"""The header a rule's token becomes, built once per (rule, token)."""

from __future__ import annotations

import pytest

from mitm_oauth.errors import TokenError
from mitm_oauth.injection import Injection, replace_fields
from mitm_oauth.model import Credentials, Match, Rule
from mitm_oauth.oauth.response import Token
from mitm_oauth.secret import Secret

CREDS = Credentials("https://idp.example/token", Secret("id"), Secret("secret"))
TOKEN = Token(Secret("the-token"), "Bearer", 3600)


def rule(**fields: object) -> Rule:
    return Rule("api", Match(host="api.example.com"), CREDS, **fields)  # type: ignore[arg-type]


def test_the_default_header_and_accept():
    given = Injection(rule(), TOKEN, usable_until=None)
    assert given.fields == (
        (b"Authorization", b"Bearer the-token"),
        (b"Accept", b"application/json"),
    )
    assert given.replaced == {b"authorization", b"accept"}
    fingerprint = Secret("the-token").fingerprint
    assert given.redacted == (
        (b"Authorization", f"Bearer [redacted sha256:{fingerprint}]".encode()),
    )
    assert given.token_field == {b"authorization"}


def test_a_custom_header_without_accept():
    given = Injection(
        rule(header_name="X-Api-Token", header_value="Token {access_token}", accept=None),
        TOKEN,
        usable_until=None,
    )
    assert given.fields == ((b"X-Api-Token", b"Token the-token"),)
    assert given.replaced == given.token_field == {b"x-api-token"}


def test_what_the_operator_is_told_names_the_token_by_fingerprint_only():
    given = Injection(rule(), TOKEN, usable_until=1_800_000_000.4)
    fingerprint = Secret("the-token").fingerprint
    assert given.metadata == {
        "action": "injected",
        "rule": "api",
        "token": fingerprint,
        "token_type": "Bearer",
        "usable_until": 1_800_000_000,
    }
    assert given.comment.startswith(f"rule api: token sha256:{fingerprint}, usable until ")
    assert "the-token" not in repr(given) + given.comment + str(given.metadata)
    assert fingerprint in repr(given)


def test_a_non_bearer_token_needs_the_rules_token_type():
    mac = Token(Secret("the-token"), "MAC", 3600)
    with pytest.raises(TokenError, match="'MAC' token, not a Bearer token"):
        Injection(rule(), mac, usable_until=None)
    assert Injection(rule(token_type="MAC"), mac, None).fields[0] == (
        b"Authorization",
        b"MAC the-token",
    )


def test_replace_fields_drops_every_spelling_and_appends():
    fields = ((b"Host", b"a"), (b"authorization", b"x"), (b"AUTHORIZATION", b"y"), (b"Z", b"z"))
    new = ((b"Authorization", b"Bearer t"),)
    assert replace_fields(fields, frozenset({b"authorization"}), new) == (
        (b"Host", b"a"),
        (b"Z", b"z"),
        (b"Authorization", b"Bearer t"),
    )
