"""DPoP proofs (RFC 9449) and their keys, in-process."""

from __future__ import annotations

import asyncio
import base64
import dataclasses

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mitm_oauth.errors import TokenError
from mitm_oauth.model import Credentials, DPoPSettings
from mitm_oauth.oauth.client import TokenClient
from mitm_oauth.oauth.dpop import (
    DPoPKey,
    DPoPKeys,
    generate_key,
    load_key,
    proof,
    target_uri,
    thumbprint,
)
from mitm_oauth.observe.exchange import redact_request_headers
from mitm_oauth.observe.redaction import Redactor
from mitm_oauth.secret import Secret

RFC7638_KEY = {
    "kty": "RSA",
    "n": (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
        "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4"
        "QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbO"
        "pbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
        "Cur-kEgU8awapJzKnqDKgw"
    ),
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


def test_the_thumbprint_is_rfc_7638s():
    assert thumbprint(RFC7638_KEY) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def verified(token: str, key: DPoPKey) -> tuple[dict[str, object], dict[str, object]]:
    """The proof's header and claims, its signature checked with the key in its own header."""
    header = jwt.get_unverified_header(token)
    public = jwt.PyJWK(header["jwk"], algorithm=key.algorithm).key
    return header, jwt.decode(token, public, algorithms=[key.algorithm])


@pytest.mark.parametrize("algorithm", ["ES256", "RS256", "PS256"])
def test_a_proof_is_signed_by_the_key_in_its_header_and_says_what_rfc_9449_asks(algorithm):
    key = generate_key(algorithm)
    token = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
    signed = proof(
        key, "post", "HTTPS://API.Example.com:443/v1/items?id=7#x", access_token=token, nonce="n-1"
    )
    header, claims = verified(signed, key)
    assert header["typ"] == "dpop+jwt"
    assert header["alg"] == algorithm
    assert thumbprint(header["jwk"]) == key.thumbprint  # type: ignore[arg-type]
    assert "d" not in header["jwk"]  # type: ignore[operator]
    assert claims["htm"] == "POST"
    assert claims["htu"] == "https://api.example.com/v1/items"
    assert claims["ath"] == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"  # RFC 9449's example
    assert claims["nonce"] == "n-1"
    assert isinstance(claims["iat"], int)


def test_each_proof_has_its_own_jti_and_a_token_request_has_no_ath():
    key = generate_key()
    claims = [verified(proof(key, "POST", "https://idp.example/token"), key)[1] for _ in range(2)]
    assert claims[0]["jti"] != claims[1]["jti"]
    assert "ath" not in claims[0]
    assert "nonce" not in claims[0]


@pytest.mark.parametrize(
    ("url", "htu"),
    [
        ("https://api.example.com/v1?x=1", "https://api.example.com/v1"),
        ("http://api.example.com:80/", "http://api.example.com/"),
        ("https://api.example.com:8443/a/b", "https://api.example.com:8443/a/b"),
        ("https://api.example.com", "https://api.example.com/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
    ],
)
def test_the_target_uri_is_as_the_server_compares_it(url, htu):
    assert target_uri(url) == htu


def pem(private: object) -> bytes:
    return private.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_keys_from_files_sign_with_the_algorithm_that_fits_them(tmp_path):
    (tmp_path / "ec.pem").write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    (tmp_path / "rsa.pem").write_bytes(pem(rsa.generate_private_key(65537, 2048)))
    assert load_key(str(tmp_path / "ec.pem")).algorithm == "ES256"
    assert load_key(str(tmp_path / "rsa.pem")).algorithm == "RS256"
    rsa_pss = load_key(str(tmp_path / "rsa.pem"), "PS256")
    assert verified(proof(rsa_pss, "GET", "https://a.example/"), rsa_pss)[1]["htm"] == "GET"


@pytest.mark.parametrize(
    ("make", "algorithm", "message"),
    [
        (lambda: ec.generate_private_key(ec.SECP384R1()), None, "must be on P-256"),
        (lambda: ec.generate_private_key(ec.SECP256R1()), "RS256", "signs ES256, not RS256"),
        (lambda: rsa.generate_private_key(65537, 2048), "ES256", "signs RS256 or PS256"),
        (lambda: rsa.generate_private_key(65537, 1024), None, "at least 2048 bits"),  # noqa: S505
    ],
)
def test_a_key_that_does_not_fit_is_one_line_naming_the_file(tmp_path, make, algorithm, message):
    path = tmp_path / "key.pem"
    path.write_bytes(pem(make()))
    with pytest.raises(ValueError, match=message) as raised:
        load_key(str(path), algorithm)
    assert str(raised.value).startswith(f"{path}: ")


def test_an_unreadable_key_file_says_why_without_its_content(tmp_path):
    with pytest.raises(ValueError, match="No such file"):
        load_key(str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("secret-looking junk")
    with pytest.raises(ValueError, match="not an unencrypted PEM private key") as raised:
        load_key(str(tmp_path / "junk.pem"))
    assert "secret-looking" not in str(raised.value)


def test_the_private_key_never_shows():
    key = generate_key()
    private = key.private_key.private_numbers().private_value  # type: ignore[union-attr]
    scalar = base64.urlsafe_b64encode(private.to_bytes(32, "big")).rstrip(b"=").decode()
    assert scalar not in repr(key)
    assert repr(key) == f"DPoPKey(algorithm='ES256', thumbprint='{key.thumbprint}')"


# -- the token request ------------------------------------------------------------------------

DPOP_CREDS = Credentials(
    "https://idp.example/oauth/token",
    Secret("client-d"),
    Secret("secret-d"),
    auth_style="params",
    dpop=DPoPSettings(),
)


class NonceServer:
    """A token endpoint that wants DPoP proofs with its nonce (RFC 9449 §8)."""

    def __init__(self, token_type: str = "DPoP") -> None:
        self.token_type = token_type
        self.nonce = "nonce-1"
        self.proofs: list[dict[str, object]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        header = jwt.get_unverified_header(request.headers["DPoP"])
        public = jwt.PyJWK(header["jwk"], algorithm=header["alg"]).key
        claims = jwt.decode(request.headers["DPoP"], public, algorithms=[header["alg"]])
        self.proofs.append({"jkt": thumbprint(header["jwk"]), **claims})
        if claims.get("nonce") != self.nonce:
            return httpx.Response(
                400, json={"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": self.nonce}
            )
        body = {"access_token": "bound", "token_type": self.token_type, "expires_in": 60}
        return httpx.Response(200, json=body, headers={"DPoP-Nonce": self.nonce})


def fetch(client: TokenClient, creds: Credentials = DPOP_CREDS):
    async def run():
        try:
            return await client.fetch(creds)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_a_token_request_carries_a_proof_and_retries_once_with_the_servers_nonce():
    server = NonceServer()
    client = TokenClient(transport=httpx.MockTransport(server))
    token = fetch(client)
    assert (token.access_token.reveal(), token.token_type) == ("bound", "DPoP")
    first, second = server.proofs
    assert "nonce" not in first
    assert second["nonce"] == "nonce-1"
    assert (second["htm"], second["htu"]) == ("POST", "https://idp.example/oauth/token")
    assert first["jkt"] == second["jkt"] == client.dpop_keys.key(DPOP_CREDS).thumbprint
    assert first["jti"] != second["jti"]


def test_the_newest_nonce_goes_into_the_next_request_from_the_start():
    server = NonceServer()
    client = TokenClient(transport=httpx.MockTransport(server))

    async def twice() -> None:
        try:
            await client.fetch(DPOP_CREDS)
            server.nonce = "nonce-2"  # and says so with its next answer
            await client.fetch(DPOP_CREDS)
            await client.fetch(DPOP_CREDS)
        finally:
            await client.aclose()

    asyncio.run(twice())
    assert [p.get("nonce") for p in server.proofs] == [
        None,
        "nonce-1",
        "nonce-1",
        "nonce-2",
        "nonce-2",
    ]


def test_a_bearer_answer_to_a_dpop_request_is_a_failure_that_says_so():
    client = TokenClient(transport=httpx.MockTransport(NonceServer(token_type="Bearer")))
    with pytest.raises(TokenError, match="answered a DPoP request with a Bearer token: it ignored"):
        fetch(client)


def test_a_dpop_key_file_that_cannot_be_used_is_a_failed_fetch(tmp_path):
    creds = dataclasses.replace(DPOP_CREDS, dpop=DPoPSettings(key_file=str(tmp_path / "k.pem")))
    client = TokenClient(transport=httpx.MockTransport(NonceServer()))
    with pytest.raises(TokenError, match=r"cannot sign DPoP proofs: .*k.pem: No such file"):
        fetch(client, creds)


def test_a_key_file_is_read_again_once_it_changes(tmp_path):
    path = tmp_path / "k.pem"
    path.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())))
    creds = dataclasses.replace(DPOP_CREDS, dpop=DPoPSettings(key_file=str(path)))
    keys = DPoPKeys()
    first = keys.key(creds)
    assert keys.key(creds) is first
    path.write_bytes(pem(ec.generate_private_key(ec.SECP256R1())) + b"\n")
    assert keys.key(creds).thumbprint != first.thumbprint
    made = DPoPKeys()
    assert made.key(DPOP_CREDS) is made.key(DPOP_CREDS)  # one per credential set, kept


def test_an_exchange_shows_the_proof_decoded_without_its_signature():
    key = generate_key()
    signed = proof(key, "POST", "https://idp.example/token", nonce="n-1")
    ((name, shown),) = redact_request_headers({"DPoP": signed}, Redactor())
    assert name == "DPoP"
    assert signed.rsplit(".", 1)[1] not in shown
    assert shown.endswith(".[signature cut]")
    assert '"typ": "dpop+jwt"' in shown
    assert '"htu": "https://idp.example/token"' in shown
    assert '"nonce": "n-1"' in shown
    assert redact_request_headers({"DPoP": "not-a-jws"}, Redactor()) == [("DPoP", "[redacted]")]
