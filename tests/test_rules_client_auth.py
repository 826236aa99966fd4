"""Rules for client authentication beyond shared secrets, and for the injected header."""

from __future__ import annotations

from pathlib import Path

import pytest

from mitm_oauth.config.load import load_rules
from mitm_oauth.errors import RulesError
from mitm_oauth.model import DEFAULT_HEADER_VALUE
from tests.support.certs import CertificateAuthority, make_client_cert, new_key, write_key
from tests.test_rules import parse, rule_with

LONG_SECRET = "s" * 64


def load(tmp_path: Path, **fields: str):
    """Load a one-rule file written into tmp_path, so relative key paths resolve there."""
    path = tmp_path / "rules.yaml"
    path.write_text(rule_with(**fields))
    (rule,) = load_rules(path, environ={})
    return rule


def load_error(tmp_path: Path, **fields: str) -> RulesError:
    with pytest.raises(RulesError) as caught:
        load(tmp_path, **fields)
    return caught.value


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rsa.pem, rsa1024.pem, ec.pem (P-256), ec384.pem, encrypted.pem and not-a-key.pem."""
    folder = tmp_path_factory.mktemp("keys")
    for kind in ("rsa", "rsa1024", "ec", "ec384"):
        write_key(folder / f"{kind}.pem", new_key(kind))
    write_key(folder / "encrypted.pem", new_key("rsa"), password=b"pass")
    (folder / "not-a-key.pem").write_text("-----BEGIN NOTHING-----\n")
    return folder


def test_client_secret_jwt_defaults_to_hs256_and_a_60_second_assertion():
    (rule,) = parse(rule_with(auth_style="client_secret_jwt", client_secret=LONG_SECRET))
    settings = rule.credentials.assertion
    assert settings is not None
    assert (settings.algorithm, settings.lifetime, settings.audience) == ("HS256", 60, None)


def test_private_key_jwt_needs_no_secret_and_reads_its_key(tmp_path: Path, keys: Path):
    rule = load(
        tmp_path,
        auth_style="private_key_jwt",
        client_secret=None,
        private_key_file=str(keys / "rsa.pem"),
        key_id="k1",
        assertion_audience="https://idp.example.com",
        assertion_lifetime="30",
    )
    settings = rule.credentials.assertion
    assert rule.credentials.client_secret is None
    assert settings is not None
    assert (settings.algorithm, settings.key_id, settings.lifetime) == ("RS256", "k1", 30)
    assert settings.audience == "https://idp.example.com"
    assert settings.private_key_file == str(keys / "rsa.pem")


@pytest.mark.parametrize(
    ("style", "expected"), [("client_secret_basic", "header"), ("client_secret_post", "params")]
)
def test_registration_names_of_the_secret_styles_are_understood(style, expected):
    (rule,) = parse(rule_with(auth_style=style))
    assert rule.credentials.auth_style == expected


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"auth_style": "jwt"}, "auth_style", "must be one of auto, header"),
        ({"auth_style": "client_secret_jwt"}, "client_secret", "shorter than the 32 bytes HS256"),
        (
            {
                "auth_style": "client_secret_jwt",
                "client_secret": "s" * 40,
                "assertion_alg": "HS384",
            },
            "client_secret",
            "48 bytes HS384",
        ),
        (
            {
                "auth_style": "client_secret_jwt",
                "client_secret": LONG_SECRET,
                "assertion_alg": "RS256",
            },
            "assertion_alg",
            "HS256, HS384, HS512",
        ),
        (
            {"auth_style": "client_secret_jwt", "client_secret": LONG_SECRET, "key_id": "k"},
            "key_id",
            "signs with the client secret",
        ),
        ({"auth_style": "private_key_jwt", "client_secret": None}, "private_key_file", "required"),
        (
            {"auth_style": "private_key_jwt", "private_key_file": "k.pem"},
            "client_secret",
            "not used with auth_style private_key_jwt",
        ),
        ({"assertion_alg": "HS256"}, "assertion_alg", "only used with auth_style"),
        ({"assertion_lifetime": "60"}, "assertion_lifetime", "only used with auth_style"),
        (
            {
                "auth_style": "client_secret_jwt",
                "client_secret": LONG_SECRET,
                "assertion_lifetime": "0",
            },
            "assertion_lifetime",
            "from 1 to 3600",
        ),
        ({"auth_style": "tls_client_auth", "client_secret": None}, "client_cert_file", "required"),
        ({"client_cert_file": "c.pem"}, "client_key_file", "together"),
        (
            {"token_headers": "{Content-Type: text/plain}"},
            "token_headers.Content-Type",
            "set by the token request",
        ),
        (
            {"token_headers": "{Authorization: x}"},
            "token_headers.Authorization",
            "auth_style auto sends its own",
        ),
        ({"token_headers": "{'a b': x}"}, "token_headers", "not a header name"),
        ({"token_headers": "{X-Key: 12}"}, "token_headers.X-Key", "not a value"),
        ({"token_request_format": "xml"}, "token_request_format", "form, json"),
        ({"header_name": "Host"}, "header_name", "cannot carry the token"),
        ({"header_name": "'X Token'"}, "header_name", "not a header name"),
        ({"header_value": "'Bearer'"}, "header_value", "must contain {access_token}"),
        ({"header_value": "'{token}'"}, "header_value", "the placeholders are"),
        ({"header_value": "'{access_token!r}'"}, "header_value", "the placeholders are"),
        ({"header_value": "'{access_token.x}'"}, "header_value", "the placeholders are"),
        ({"header_value": "'{access_token'"}, "header_value", "not a valid template"),
    ],
)
def test_client_auth_errors_name_the_field(fields, field, words):
    with pytest.raises(RulesError) as caught:
        parse(rule_with(**fields))
    assert caught.value.field == field
    assert words in str(caught.value)
    assert "'billing' (#1)" in str(caught.value)


@pytest.mark.parametrize(
    ("key", "alg", "words"),
    [
        ("ec.pem", "RS256", "not an RSA key, which RS256 needs"),
        ("rsa.pem", "ES256", "not an EC secp256r1 key, which ES256 needs"),
        ("ec384.pem", "ES256", "not an EC secp256r1 key"),
        ("rsa1024.pem", "PS256", "has 1024 bits; PS256 needs 2048"),
        ("encrypted.pem", "RS256", "is encrypted"),
        ("not-a-key.pem", "RS256", "is not a PEM private key"),
        ("missing.pem", "RS256", "cannot read"),
    ],
)
def test_private_keys_must_fit_the_algorithm(tmp_path: Path, keys: Path, key, alg, words):
    error = load_error(
        tmp_path,
        auth_style="private_key_jwt",
        client_secret=None,
        private_key_file=str(keys / key),
        assertion_alg=alg,
    )
    assert error.field == "private_key_file"
    assert words in str(error)


@pytest.mark.parametrize(
    ("key", "alg"),
    [("rsa.pem", "PS256"), ("ec.pem", "ES256"), ("ec384.pem", "ES384"), ("rsa.pem", "RS512")],
)
def test_private_keys_that_fit_load(tmp_path: Path, keys: Path, key, alg):
    rule = load(
        tmp_path,
        auth_style="private_key_jwt",
        client_secret=None,
        private_key_file=str(keys / key),
        assertion_alg=alg,
    )
    assert rule.credentials.assertion.algorithm == alg


def test_client_certificates_are_checked_at_load(tmp_path: Path, keys: Path):
    ca = CertificateAuthority()
    client = make_client_cert(tmp_path, "client-a", ca)
    other = make_client_cert(tmp_path, "client-b", ca)
    rule = load(
        tmp_path,
        auth_style="tls_client_auth",
        client_secret=None,
        client_cert_file="client-a.pem",
        client_key_file="client-a.key",
    )
    certificate = rule.credentials.client_certificate
    assert certificate is not None
    assert certificate.cert_file == str(client.cert_file)
    # Also beside a secret: the certificate is shown whatever the auth style.
    rule = load(tmp_path, client_cert_file="client-a.pem", client_key_file="client-a.key")
    assert rule.credentials.client_certificate == certificate

    def problem(cert: str, key: str) -> RulesError:
        return load_error(tmp_path, client_cert_file=cert, client_key_file=key)

    error = problem("client-a.pem", str(other.key_file))
    assert error.field == "client_cert_file"
    assert "is not its PEM private key" in str(error)
    error = problem("client-a.pem", str(keys / "encrypted.pem"))
    assert (error.field, "is encrypted" in str(error)) == ("client_key_file", True)
    error = problem("client-a.pem", "missing.key")
    assert (error.field, "cannot read" in str(error)) == ("client_key_file", True)
    error = problem("missing.pem", "client-a.key")
    assert (error.field, "cannot read" in str(error)) == ("client_cert_file", True)


def test_tls_client_auth_refuses_a_secret(tmp_path: Path):
    make_client_cert(tmp_path, "client-a")
    error = load_error(
        tmp_path,
        auth_style="self_signed_tls_client_auth",
        client_cert_file="client-a.pem",
        client_key_file="client-a.key",
    )
    assert error.field == "client_secret"


def test_token_headers_format_and_injected_header():
    (rule,) = parse(
        rule_with(
            auth_style="params",
            token_headers="{X-Tenant: acme, Authorization: 'Key k'}",
            token_request_format="json",
            header_name="X-Api-Token",
            header_value="'{access_token}'",
            token_type="Bearer",
        )
    )
    assert rule.credentials.token_headers == (("X-Tenant", "acme"), ("Authorization", "Key k"))
    assert rule.credentials.request_format == "json"
    assert (rule.header_name, rule.header_value) == ("X-Api-Token", "{access_token}")
    (default,) = parse(rule_with())
    assert (default.header_name, default.header_value) == ("Authorization", DEFAULT_HEADER_VALUE)
    assert default.credentials.request_format == "form"


def test_secret_token_header_values_are_never_quoted():
    with pytest.raises(RulesError) as caught:
        parse(rule_with(token_headers="{X-Key: 1234567}"))
    assert "1234567" not in str(caught.value)


def test_equal_settings_share_a_token_and_different_ones_do_not(tmp_path: Path, keys: Path):
    def credentials(**fields: str):
        return load(
            tmp_path,
            auth_style="private_key_jwt",
            client_secret=None,
            private_key_file=str(keys / "rsa.pem"),
            **fields,
        ).credentials

    assert credentials() == credentials()
    assert credentials() != credentials(key_id="k2")
    assert credentials() != credentials(token_headers="{X-Tenant: b}")
