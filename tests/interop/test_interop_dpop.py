"""Interop: DPoP-bound tokens (RFC 9449) from panva/oidc-provider, through a real mitmdump.

The provider binds each token to the proof's key (`cnf.jkt` in its JWT access token) and,
here, wants its nonce in every proof. DPoP goes with a shared secret, a JWT assertion and a
TLS client certificate alike. The API checks every request's proof against the
token's key, as a resource server does.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import jwt
import pytest

from mitm_oauth.oauth.dpop import load_key
from tests.conftest import curl
from tests.interop.authorization_server import AuthorizationServer, install
from tests.interop.test_interop import client, jwk_of
from tests.support.certs import (
    CertificateAuthority,
    make_client_cert,
    make_server_cert,
    new_key,
    write_key,
)
from tests.support.dpop import ProofChecker
from tests.support.proxy import Mitmdump
from tests.support.servers import Recorded, RecordingServer, Reply


class BoundApi:
    """Accepts a DPoP token only with a proof by the key named in the token's cnf.jkt."""

    def __init__(self) -> None:
        self.checker = ProofChecker("")
        self.tokens: list[dict[str, Any]] = []

    def __call__(self, request: Recorded) -> Reply:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme != "DPoP":
            self.checker.problems.append(f"scheme {scheme!r}")
            return Reply(401, {"error": "invalid_token"})
        claims = jwt.decode(token, options={"verify_signature": False})
        self.tokens.append(claims)
        proof = self.checker.check(request, access_token=token)
        if proof is None or proof["jkt"] != claims.get("cnf", {}).get("jkt"):
            self.checker.problems.append("the proof is not by the token's key")
            return Reply(401, {"error": "invalid_dpop_proof"})
        return Reply(body={"ok": True})


def test_dpop_tokens_from_a_certified_provider_with_its_nonces(
    tmp_path_factory: pytest.TempPathFactory,
):
    install()
    folder = tmp_path_factory.mktemp("interop-dpop")
    server_cert = make_server_cert(folder)
    client_ca = CertificateAuthority("client CA")
    tls = {
        "cert": str(server_cert.cert_file),
        "key": str(server_cert.key_file),
        "clientCa": str(client_ca.write(folder / "client-ca.pem")),
    }
    tls_cert = make_client_cert(folder, "tls-client", client_ca)
    secret = secrets.token_urlsafe(48)
    signing_key = write_key(folder / "assertion.pem", new_key("ec"))
    dpop_key = write_key(folder / "dpop-rsa.pem", new_key("rsa"))
    clients = [
        client(
            "dpop-basic", "client_secret_basic", client_secret=secret, dpop_bound_access_tokens=True
        ),
        client(
            "dpop-key",
            "private_key_jwt",
            jwks={"keys": [jwk_of(signing_key, kid="ec-1")]},
            dpop_bound_access_tokens=True,
        ),
        client(
            "dpop-tls",
            "tls_client_auth",
            tls_client_auth_subject_dn="CN=tls-client",
            dpop_bound_access_tokens=True,
        ),
    ]
    api = BoundApi()
    with (
        AuthorizationServer(folder, clients=clients, tls=tls, dpop_nonce=True) as provider,
        RecordingServer(api) as server,
    ):
        api.checker.origin = server.origin
        common = {"token_url": provider.url("/token", "plain"), "ca_file": str(server_cert.ca_file)}
        rules = [
            {
                "name": "generated-es256",
                "match": {"host": "127.0.0.1", "port": server.port, "scheme": "http", "path": "/a"},
                "client_id": "dpop-basic",
                "client_secret": secret,
                "auth_style": "client_secret_basic",
                "dpop": True,
                **common,
            },
            {
                "name": "file-ps256",
                "match": {"host": "127.0.0.1", "port": server.port, "scheme": "http", "path": "/b"},
                "client_id": "dpop-key",
                "auth_style": "private_key_jwt",
                "private_key_file": str(signing_key),
                "assertion_alg": "ES256",
                "dpop": True,
                "dpop_key_file": str(dpop_key),
                "dpop_alg": "PS256",
                **common,
            },
            {
                "name": "mtls-es256",
                "match": {"host": "127.0.0.1", "port": server.port, "scheme": "http", "path": "/d"},
                "client_id": "dpop-tls",
                "auth_style": "tls_client_auth",
                "client_cert_file": str(tls_cert.cert_file),
                "client_key_file": str(tls_cert.key_file),
                "dpop": True,
                **common,
                "token_url": provider.url("/token", "mtls"),
            },
            {
                "name": "without-dpop",
                "match": {"host": "127.0.0.1", "port": server.port, "scheme": "http", "path": "/c"},
                "client_id": "dpop-basic",
                "client_secret": secret,
                "auth_style": "client_secret_basic",
                **common,
            },
        ]
        rules_file = folder / "rules.yaml"
        rules_file.write_text(json.dumps({"rules": rules}))
        with Mitmdump(rules_file, folder / "confdir") as proxy:
            paths = ("/a", "/a", "/b", "/d", "/c")
            results = [curl(proxy, f"{server.origin}{path}") for path in paths]
    assert [status for status, _ in results[:4]] == [200, 200, 200, 200]
    assert api.checker.problems == []
    # The provider asked for its nonce once per origin (its mTLS listener is another one): the
    # first token request there was retried with it, the next carried it from the start.
    nonce_asked = [e["client"] for e in provider.events if e["error"] == "use_dpop_nonce"]
    assert nonce_asked == ["dpop-basic", "dpop-tls"]
    jkts = [t["cnf"]["jkt"] for t in api.tokens]
    assert jkts[2] == load_key(str(dpop_key), "PS256").thumbprint
    assert jkts[0] == jkts[1] != jkts[2]
    assert jkts[3] not in jkts[:3]  # another credential set: a key of its own
    assert [p["alg"] for p in api.checker.proofs] == ["ES256", "ES256", "PS256", "ES256"]
    assert [t["client_id"] for t in api.tokens] == [
        "dpop-basic",
        "dpop-basic",
        "dpop-key",
        "dpop-tls",
    ]
    status, body = results[4]
    assert status == 502
    assert json.loads(body)["token_endpoint_error"] == "invalid_grant"  # the provider's word
    (refused,) = [e for e in provider.events if e["error"] == "invalid_grant"]
    assert "DPoP" in refused["detail"], refused  # its reason, which it keeps to itself
    assert secret not in proxy.output
