"""End to end: client authentication beyond shared secrets, and a custom injected header.

The token endpoint here is ours; `tests/interop/` runs the same styles against
a certified authorization server.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jwt

from tests.conftest import curl, rule, rules
from tests.support.certs import (
    CertificateAuthority,
    ServerCert,
    make_client_cert,
    new_key,
    write_key,
)
from tests.support.servers import Recorded, RecordingServer, Reply, TokenIssuer, echo


def test_private_key_jwt_json_and_a_custom_header(start_proxy, tmp_path: Path, issuer, api):
    key = new_key("rsa")
    key_file = write_key(tmp_path / "client.key", key)
    with RecordingServer(issuer) as idp:
        token_url = f"{idp.origin}/token"
        proxy = start_proxy(
            rules(
                rule(
                    "api",
                    api,
                    idp,
                    client_secret=None,
                    auth_style="private_key_jwt",
                    private_key_file=str(key_file),
                    key_id="k1",
                    token_request_format="json",
                    token_headers={"X-Tenant": "sentinel-tenant-value"},
                    header_name="X-Api-Token",
                    header_value="{access_token}",
                )
            )
        )
        status, _ = curl(proxy, f"{api.origin}/v1")
        assert status == 200
        (request,) = idp.requests
    assert request.header("Content-Type") == "application/json"
    assert request.header("X-Tenant") == "sentinel-tenant-value"
    assert request.header("Authorization") is None
    body = json.loads(request.body)
    assert body["client_id"] == "client-api"
    assert "client_secret" not in body
    claims = jwt.decode(
        body["client_assertion"], key.public_key(), algorithms=["RS256"], audience=token_url
    )
    assert claims["iss"] == claims["sub"] == "client-api"
    assert jwt.get_unverified_header(body["client_assertion"])["kid"] == "k1"
    (seen,) = api.requests
    assert seen.header("X-Api-Token") == "sentinel-token-1"
    assert seen.header("Authorization") is None
    proxy.stop()
    assert body["client_assertion"] not in proxy.output
    assert "sentinel-tenant-value" not in proxy.output


def test_tls_client_certificate_is_shown_and_a_renewed_one_picked_up(
    start_proxy, tmp_path: Path, server_cert: ServerCert
):
    ca = CertificateAuthority("client CA")
    client_ca = ca.write(tmp_path / "client-ca.pem")
    current = make_client_cert(tmp_path, "client-a", ca)
    renewed = make_client_cert(tmp_path, "client-b", ca)
    issuer = TokenIssuer(prefix="sentinel-token")

    def api_handler(request: Recorded) -> Reply:  # the first token is refused: a purge
        refused = request.header("Authorization") == "Bearer sentinel-token-1"
        return Reply(401) if refused else echo(request)

    with (
        RecordingServer(issuer, tls=server_cert, client_ca=client_ca) as idp,
        RecordingServer(api_handler) as api,
    ):
        proxy = start_proxy(
            rules(
                rule(
                    "api",
                    api,
                    idp,
                    match={"host": api.host, "port": api.port, "scheme": "http"},
                    client_secret=None,
                    auth_style="tls_client_auth",
                    ca_file=str(server_cert.ca_file),
                    client_cert_file=str(current.cert_file),
                    client_key_file=str(current.key_file),
                )
            )
        )
        assert curl(proxy, f"{api.origin}/")[0] == 401
        for suffix in (".pem", ".key"):  # renewed as a deployment would: rename over the old
            os.replace(renewed.cert_file.with_suffix(suffix), current.cert_file.with_suffix(suffix))
        assert curl(proxy, f"{api.origin}/")[0] == 200
    assert [r.client_cert for r in idp.requests] == ["client-a", "client-b"]
    assert [r.form for r in idp.requests] == [
        {"grant_type": ["client_credentials"], "client_id": ["client-api"]}
    ] * 2
