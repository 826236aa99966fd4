"""Interop: the product end to end against panva/oidc-provider, a certified OpenID provider.

One provider process holds one client per authentication method; one
mitmdump holds one rule per case, each on its own path of one upstream API.
Keys, secrets and certificates are made here, at test time. A token counts
as issued to the right client when its signature checks against the
provider's JWKS and its `client_id` claim names that client.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509 import load_pem_x509_certificate
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.conftest import curl
from tests.interop.authorization_server import AuthorizationServer, install
from tests.support.certs import (
    CertificateAuthority,
    make_client_cert,
    make_server_cert,
    new_key,
    write_key,
)
from tests.support.proxy import Mitmdump
from tests.support.servers import Recorded, RecordingServer, Reply, echo

API = "urn:interop:api"
"""The audience the provider puts in every access token (see server.mjs)."""

SUCCESSES = [
    "basic",
    "post",
    "auto",
    "secret-jwt",
    "secret-jwt-hs512",
    "key-rs256",
    "key-ps256",
    "key-es256",
    "tls",
    "self-signed",
    "custom-header",
]


@dataclass
class Interop:
    provider: AuthorizationServer
    skewed: AuthorizationServer
    proxy: Mitmdump
    api: RecordingServer
    relay: RecordingServer
    provider_ca: Path
    secrets: list[str]
    """Every client secret and private key (PEM): none may appear in the proxy's output."""

    def call(self, case: str) -> tuple[int, dict[str, Any], Recorded | None]:
        """A request for `case` through the proxy: status, body, and what the API received."""
        before = len(self.api.requests)
        status, body = curl(self.proxy, f"{self.api.origin}/{case}/items")
        received = self.api.requests[before:]
        return status, json.loads(body), received[0] if received else None

    def verified_claims(self, token: str) -> dict[str, Any]:
        """The access token's claims, its signature checked against the provider's JWKS."""
        context = ssl.create_default_context(cafile=str(self.provider_ca))
        jwks = httpx.get(self.provider.url("/jwks"), verify=context, timeout=10).json()
        key = jwt.PyJWKSet.from_dict(jwks)[jwt.get_unverified_header(token)["kid"]]
        return jwt.decode(
            token, key, algorithms=["RS256"], audience=API, issuer=self.provider.issuer
        )


def jwk_of(key_file: Path, **extra: object) -> dict[str, object]:
    """The public JWK of a PEM private key, as a client registers it."""
    public = load_pem_private_key(key_file.read_bytes(), None).public_key()
    algorithm = RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm
    return {**json.loads(algorithm.to_jwk(public)), **extra}


def client(client_id: str, method: str, **metadata: object) -> dict[str, object]:
    return {
        "client_id": client_id,
        "token_endpoint_auth_method": method,
        "grant_types": ["client_credentials"],
        "redirect_uris": [],
        "response_types": [],
        **metadata,
    }


def replaying_relay(provider: AuthorizationServer, ca_file: Path):
    """A token endpoint in front of the provider that spends each request once before
    forwarding it: what a captured assertion replayed by someone else looks like."""

    def handler(request: Recorded) -> Reply:
        headers = {k: v for k, v in request.headers if k.lower() in ("content-type", "accept")}
        context = ssl.create_default_context(cafile=ca_file)
        with httpx.Client(verify=context, timeout=10) as http:
            http.post(provider.url("/token"), headers=headers, content=request.body)
            answer = http.post(provider.url("/token"), headers=headers, content=request.body)
        return Reply(answer.status_code, answer.content, answer.headers["content-type"])

    return handler


@pytest.fixture(scope="module")
def interop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Interop]:
    install()
    folder = tmp_path_factory.mktemp("interop")
    server_cert = make_server_cert(folder)
    client_ca = CertificateAuthority("client CA")
    tls = {
        "cert": str(server_cert.cert_file),
        "key": str(server_cert.key_file),
        "clientCa": str(client_ca.write(folder / "client-ca.pem")),
    }
    tls_cert = make_client_cert(folder, "tls-client", client_ca)
    self_signed = make_client_cert(folder, "self-signed-client")
    stranger = make_client_cert(folder, "stranger")
    rsa_key = write_key(folder / "rsa.pem", new_key("rsa"))
    other_rsa_key = write_key(folder / "other-rsa.pem", new_key("rsa"))
    ec_key = write_key(folder / "ec.pem", new_key("ec"))
    secret = {name: secrets.token_urlsafe(48) for name in ("basic", "post", "secret-jwt")}
    secret["hs512"] = secrets.token_urlsafe(72)
    self_signed_der = load_pem_x509_certificate(self_signed.cert_file.read_bytes()).public_bytes(
        Encoding.DER
    )
    clients = [
        client("basic", "client_secret_basic", client_secret=secret["basic"]),
        client("post", "client_secret_post", client_secret=secret["post"]),
        client("secret-jwt", "client_secret_jwt", client_secret=secret["secret-jwt"]),
        client(
            "secret-jwt-hs512",
            "client_secret_jwt",
            client_secret=secret["hs512"],
            token_endpoint_auth_signing_alg="HS512",
        ),
        client("key-rs256", "private_key_jwt", jwks={"keys": [jwk_of(rsa_key, kid="rsa-1")]}),
        client(
            "key-ps256",
            "private_key_jwt",
            token_endpoint_auth_signing_alg="PS256",
            jwks={"keys": [jwk_of(rsa_key, kid="rsa-1")]},
        ),
        client("key-es256", "private_key_jwt", jwks={"keys": [jwk_of(ec_key, kid="ec-1")]}),
        client("tls", "tls_client_auth", tls_client_auth_subject_dn="CN=tls-client"),
        client(
            "self-signed",
            "self_signed_tls_client_auth",
            jwks={
                "keys": [
                    jwk_of(self_signed.key_file, x5c=[base64.b64encode(self_signed_der).decode()])
                ]
            },
        ),
    ]
    with (
        AuthorizationServer(folder, clients=clients, tls=tls) as provider,
        AuthorizationServer(folder, clients=clients, tls=tls, clock_offset=120) as skewed,
        RecordingServer(echo) as api,
        RecordingServer(replaying_relay(provider, server_cert.ca_file)) as relay,
    ):
        token_url = provider.url("/token")
        cert = {
            "client_cert_file": str(tls_cert.cert_file),
            "client_key_file": str(tls_cert.key_file),
        }
        self_signed_files = {
            "client_cert_file": str(self_signed.cert_file),
            "client_key_file": str(self_signed.key_file),
        }
        cases: dict[str, dict[str, object]] = {
            "basic": {"auth_style": "client_secret_basic", "client_secret": secret["basic"]},
            "post": {"auth_style": "client_secret_post", "client_secret": secret["post"]},
            "auto": {"client_id": "post", "client_secret": secret["post"]},
            "secret-jwt": {
                "auth_style": "client_secret_jwt",
                "client_secret": secret["secret-jwt"],
            },
            "secret-jwt-hs512": {
                "auth_style": "client_secret_jwt",
                "client_secret": secret["hs512"],
                "assertion_alg": "HS512",
            },
            "key-rs256": {
                "auth_style": "private_key_jwt",
                "private_key_file": str(rsa_key),
                "key_id": "rsa-1",
            },
            "key-ps256": {
                "auth_style": "private_key_jwt",
                "private_key_file": str(rsa_key),
                "assertion_alg": "PS256",
            },
            "key-es256": {
                "auth_style": "private_key_jwt",
                "private_key_file": str(ec_key),
                "assertion_alg": "ES256",
            },
            "tls": {"auth_style": "tls_client_auth", **cert},
            "self-signed": {"auth_style": "self_signed_tls_client_auth", **self_signed_files},
            "custom-header": {
                "client_id": "basic",
                "client_secret": secret["basic"],
                "token_headers": {"X-Request-Source": "interop"},
                "header_name": "X-Access-Token",
                "header_value": "{access_token}",
            },
            # What a provider refuses, surfaced to the client and the log:
            "wrong-secret": {
                "client_id": "basic",
                "client_secret": secrets.token_urlsafe(48),
                "auth_style": "client_secret_basic",
            },
            "wrong-key": {
                "client_id": "key-rs256",
                "auth_style": "private_key_jwt",
                "private_key_file": str(other_rsa_key),
                "key_id": "rsa-1",
            },
            "expired": {
                "client_id": "secret-jwt",
                "auth_style": "client_secret_jwt",
                "client_secret": secret["secret-jwt"],
                "token_url": skewed.url("/token"),
            },
            "replayed": {
                "client_id": "key-rs256",
                "auth_style": "private_key_jwt",
                "private_key_file": str(rsa_key),
                "token_url": f"{relay.origin}/token",
                "assertion_audience": provider.issuer,
            },
            "no-certificate": {
                "client_id": "tls",
                "auth_style": "tls_client_auth",
                **cert,
                "token_url": provider.url("/token", "plain"),
            },
            "unregistered-certificate": {
                "client_id": "self-signed",
                "auth_style": "self_signed_tls_client_auth",
                "client_cert_file": str(stranger.cert_file),
                "client_key_file": str(stranger.key_file),
            },
        }
        rules = []
        for name, fields in cases.items():
            rule = {
                "name": name,
                "client_id": name,
                "token_url": token_url,
                "ca_file": str(server_cert.ca_file),
                "match": {"host": api.host, "port": api.port, "scheme": "http", "path": f"/{name}"},
                **fields,
            }
            rules.append(rule)
        rules_file = folder / "rules.yaml"
        rules_file.write_text(json.dumps({"rules": rules}, indent=2))
        with Mitmdump(rules_file, folder / "confdir") as proxy:
            keys = [p.read_text() for p in (rsa_key, other_rsa_key, ec_key)]
            yield Interop(
                provider,
                skewed,
                proxy,
                api,
                relay,
                server_cert.ca_file,
                secrets=[*secret.values(), *keys],
            )
        for value in [*secret.values(), *keys]:
            assert value not in proxy.output


@pytest.mark.parametrize("case", SUCCESSES)
def test_a_token_per_method_issued_to_the_right_client(interop: Interop, case: str):
    before = interop.provider.event_count
    status, _, received = interop.call(case)
    assert status == 200
    assert received is not None
    if case == "custom-header":
        token = received.header("X-Access-Token")
        assert received.header("Authorization") is None
    else:
        scheme, _, token = (received.header("Authorization") or "").partition(" ")
        assert scheme == "Bearer"
    assert token
    claims = interop.verified_claims(token)
    expected_client = {"auto": "post", "custom-header": "basic"}.get(case, case)
    assert claims["client_id"] == expected_client
    assert interop.provider.next_event(expected_client, "grant.success", after=before)


@pytest.mark.parametrize(
    ("case", "client", "detail"),
    [
        ("wrong-secret", "basic", "invalid secret provided"),
        ("wrong-key", "key-rs256", "signature verification failed"),
        ("expired", "secret-jwt", "jwt expired"),
        ("replayed", "key-rs256", "client assertion tokens must only be used once"),
        ("no-certificate", "tls", "client certificate was not provided"),
        ("unregistered-certificate", "self-signed", "unregistered client certificate provided"),
    ],
)
def test_the_providers_refusals_reach_the_client_and_the_log(
    interop: Interop, case, client, detail
):
    server = interop.skewed if case == "expired" else interop.provider
    before = server.event_count
    status, body, received = interop.call(case)
    assert status == 502
    assert received is None  # never upstream without its token
    assert body["token_endpoint_error"] == "invalid_client"
    assert body["token_endpoint_error_description"] == "client authentication failed"
    refusal = server.next_event(client, "grant.error", after=before)
    assert detail in refusal["detail"]
    logged = re.compile(
        rf"token fetch for rule {case} failed .*error='invalid_client', "
        r"error_description='client authentication failed'; permanent failure"
    )
    assert interop.proxy.wait_for_line(logged) is not None  # the line may still be in the pipe
