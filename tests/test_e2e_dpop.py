"""End to end: DPoP-bound tokens (RFC 9449) through a real mitmdump, proofs checked by the
token endpoint and the API as a server does."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from mitmproxy import io

from mitm_oauth.oauth.dpop import load_key
from mitm_oauth.secret import Secret
from tests.conftest import client, rule, rules
from tests.support.dpop import DPoPApi, DPoPIssuer
from tests.support.servers import RecordingServer


@pytest.fixture
def dpop_idp():
    issuer = DPoPIssuer("")
    with RecordingServer(issuer) as server:
        issuer.checker.origin = server.origin
        yield server, issuer


def dpop_api(issuer: DPoPIssuer, server_cert, *, tls: bool, nonce: str | None = None):
    api = DPoPApi(issuer, nonce=nonce)
    server = RecordingServer(api, tls=server_cert if tls else None)
    api.checker.origin = server.origin
    return server, api


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_every_request_carries_a_fresh_proof_bound_to_its_token(
    start_proxy, server_cert, dpop_idp, tls
):
    idp, issuer = dpop_idp
    server, api = dpop_api(issuer, server_cert, tls=tls)
    with server:
        proxy = start_proxy(rules(rule("ledger", server, idp, dpop=True)))
        with client(proxy) as http:
            answers = [
                http.get(f"{server.origin}/v1/items?page=2"),
                http.post(f"{server.origin}/v1/items", json={"a": 1}),
                http.put(f"{server.origin}/v1/items/7", content=b"x"),
                http.get(f"{server.origin}/v1/items", headers={"DPoP": "the-apps-own"}),
            ]
    assert [a.status_code for a in answers] == [200] * 4
    assert api.checker.problems == []
    assert issuer.checker.problems == []
    assert [p["htm"] for p in api.checker.proofs] == ["GET", "POST", "PUT", "GET"]
    assert {p["jkt"] for p in api.checker.proofs} == set(issuer.bound.values())
    assert len(issuer.bound) == 1  # one token, a proof per request


def test_nonces_on_both_sides_an_idempotent_request_is_replayed_once(
    start_proxy, server_cert, dpop_idp
):
    """The token endpoint and the API each want their nonce: the token request is retried once
    with it; a GET that the API refuses for want of its nonce is replayed once; a POST is not,
    and the next request carries the nonce from the start."""
    idp, issuer = dpop_idp
    issuer.checker.nonce = "idp-nonce-1"
    server, api = dpop_api(issuer, server_cert, tls=True, nonce="api-nonce-1")
    with server:
        proxy = start_proxy(rules(rule("ledger", server, idp, dpop=True)))
        with client(proxy) as http:
            first = http.get(f"{server.origin}/v1/a")
            api.checker.nonce = "api-nonce-2"
            refused = http.post(f"{server.origin}/v1/b", content=b"{}")
            after = http.post(f"{server.origin}/v1/b", content=b"{}")
    assert first.status_code == 200
    assert refused.status_code == 401  # not replayed: a POST may not be sent twice
    assert after.status_code == 200
    assert [r.method for r in server.requests] == ["GET", "GET", "POST", "POST"]
    nonces = [p.get("nonce") for p in api.checker.proofs]
    assert nonces == [None, "api-nonce-1", "api-nonce-1", "api-nonce-2"]
    assert [p.get("nonce") for p in issuer.checker.proofs] == [None, "idp-nonce-1"]
    assert api.checker.problems == issuer.checker.problems == []


def test_a_key_from_a_file_signs_and_binds(start_proxy, server_cert, dpop_idp, tmp_path):
    key_file = tmp_path / "dpop.pem"
    key_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    idp, issuer = dpop_idp
    server, api = dpop_api(issuer, server_cert, tls=False)
    with server:
        proxy = start_proxy(
            rules(rule("ledger", server, idp, dpop=True, dpop_key_file=str(key_file)))
        )
        with client(proxy) as http:
            assert http.get(f"{server.origin}/v1").status_code == 200
    assert set(issuer.bound.values()) == {load_key(str(key_file)).thumbprint}
    assert api.checker.problems == []


def test_a_rule_without_dpop_gets_a_clear_502_from_an_endpoint_that_requires_it(
    start_proxy, server_cert, dpop_idp
):
    idp, issuer = dpop_idp
    server, _api = dpop_api(issuer, server_cert, tls=False)
    with server:
        proxy = start_proxy(rules(rule("ledger", server, idp)))
        with client(proxy) as http:
            answer = http.get(f"{server.origin}/v1")
    assert answer.status_code == 502
    body = json.loads(answer.text)
    assert body["token_endpoint_error"] == "invalid_dpop_proof"
    assert body["token_endpoint_error_description"] == "DPoP required"
    assert server.requests == []


def test_saved_flows_hold_neither_the_token_nor_a_proof(
    start_proxy, server_cert, dpop_idp, tmp_path
):
    idp, issuer = dpop_idp
    server, api = dpop_api(issuer, server_cert, tls=True)
    saved = tmp_path / "flows.mitm"
    with server:
        proxy = start_proxy(
            rules(rule("ledger", server, idp, dpop=True)), options={"save_stream_file": str(saved)}
        )
        with client(proxy) as http:
            assert http.get(f"{server.origin}/v1").status_code == 200
        proxy.stop()
    with saved.open("rb") as f:
        (flow,) = list(io.FlowReader(f).stream())
    assert flow.request.headers["Authorization"].startswith("DPoP [redacted sha256:")
    assert flow.request.headers["DPoP"] == "[redacted DPoP proof]"
    sent = server.requests[0].header("DPoP")
    assert sent is not None
    for secret in (*issuer.bound, sent, sent.rsplit(".", 1)[1]):
        assert secret.encode() not in saved.read_bytes()
    assert api.checker.problems == []


def test_check_and_explain_say_a_rule_is_dpop_bound(tmp_path, dpop_idp):
    idp, issuer = dpop_idp
    with RecordingServer(DPoPApi(issuer)) as server:
        rules_file = tmp_path / "rules.yaml"
        rules_file.write_text(rules(rule("ledger", server, idp, dpop=True)))
        mitm_oauth = [str(Path(sys.executable).parent / "mitm-oauth")]
        checked = subprocess.run(
            [*mitm_oauth, "check", "--fetch", str(rules_file)], capture_output=True, text=True
        )
        explained = subprocess.run(
            [*mitm_oauth, "explain", str(rules_file), f"{server.origin}/v1"],
            capture_output=True,
            text=True,
        )
    assert checked.returncode == 0, checked.stderr
    (jkt,) = set(issuer.bound.values())
    fingerprint = Secret("dpop-token-1").fingerprint
    assert checked.stdout.splitlines()[1].endswith(
        f"token_type DPoP, expires_in 3600, scope (none), sha256:{fingerprint}, "
        f"DPoP-bound to key {jkt}"
    )
    assert "matches: its DPoP-bound token is sent, with a proof per request" in explained.stdout
