"""A token endpoint that issues DPoP-bound tokens and an API that checks proofs, as RFC 9449
§4.3 and §7 say: signature by the embedded key, htm, htu, iat, a jti never seen twice, ath,
the key bound to the token, and the server's nonce when it asks for one."""

from __future__ import annotations

import base64
import hashlib
import itertools
import threading
import time
from typing import Any

import jwt

from mitm_oauth.oauth.dpop import thumbprint
from tests.support.servers import Recorded, Reply

IAT_WINDOW = 60


class ProofChecker:
    """Checks proofs; `problems` lists every failed check, for the test to assert on."""

    def __init__(self, origin: str, nonce: str | None = None) -> None:
        self.origin = origin
        self.nonce = nonce
        """When set, proofs must carry it (and an answer asks for it when they do not)."""
        self.seen_jti: set[str] = set()
        self.problems: list[str] = []
        self.proofs: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def check(self, request: Recorded, *, access_token: str | None) -> dict[str, Any] | None:
        """The proof's claims and key thumbprint, or None (and a problem) if it fails."""
        value = request.header("DPoP")
        if value is None:
            return self._problem("no DPoP proof")
        try:
            header = jwt.get_unverified_header(value)
            key = jwt.PyJWK(header["jwk"], algorithm=header["alg"]).key
            claims = jwt.decode(value, key, algorithms=[header["alg"]])
        except (jwt.PyJWTError, KeyError, ValueError) as e:
            return self._problem(f"bad proof: {e}")
        if header.get("typ") != "dpop+jwt" or "d" in header["jwk"]:
            return self._problem(f"bad proof header: {header}")
        htu = self.origin + request.path.split("?", 1)[0]
        if claims.get("htm") != request.method or claims.get("htu") != htu:
            return self._problem(f"htm/htu {claims.get('htm')} {claims.get('htu')} != {htu}")
        if abs(time.time() - claims.get("iat", 0)) > IAT_WINDOW:
            return self._problem("iat outside the window")
        with self._lock:
            if claims.get("jti") in self.seen_jti:
                return self._problem("jti replayed")
            self.seen_jti.add(claims["jti"])
        if access_token is not None:
            ath = base64.urlsafe_b64encode(hashlib.sha256(access_token.encode()).digest())
            if claims.get("ath") != ath.rstrip(b"=").decode():
                return self._problem("ath does not match the token")
        checked = {**claims, "jkt": thumbprint(header["jwk"]), "alg": header["alg"]}
        self.proofs.append(checked)
        return checked

    def _problem(self, text: str) -> None:
        self.problems.append(text)
        return None


class DPoPIssuer:
    """A token endpoint for DPoP clients: a DPoP token bound to the proof's key."""

    def __init__(self, origin: str, nonce: str | None = None) -> None:
        self.checker = ProofChecker(origin, nonce)
        self.bound: dict[str, str] = {}
        """Each issued token's jkt."""
        self._numbers = itertools.count(1)

    def __call__(self, request: Recorded) -> Reply:
        if request.header("DPoP") is None:
            return Reply(400, {"error": "invalid_dpop_proof", "error_description": "DPoP required"})
        claims = self.checker.check(request, access_token=None)
        if claims is None:
            return Reply(400, {"error": "invalid_dpop_proof"})
        nonce = self.checker.nonce
        if nonce is not None and claims.get("nonce") != nonce:
            return Reply(400, {"error": "use_dpop_nonce"}, headers={"DPoP-Nonce": nonce})
        token = f"dpop-token-{next(self._numbers)}"
        self.bound[token] = claims["jkt"]
        body = {"access_token": token, "token_type": "DPoP", "expires_in": 3600}
        return Reply(body=body, headers={"DPoP-Nonce": nonce} if nonce else {})


class DPoPApi:
    """An API that wants DPoP-bound tokens from `issuer`, each request with its proof."""

    def __init__(self, issuer: DPoPIssuer, origin: str = "", nonce: str | None = None) -> None:
        self.issuer = issuer
        self.checker = ProofChecker(origin, nonce)

    def __call__(self, request: Recorded) -> Reply:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        if scheme != "DPoP" or token not in self.issuer.bound:
            self.checker.problems.append(f"not a DPoP token: {scheme}")
            return Reply(401, {"error": "invalid_token"}, headers={"WWW-Authenticate": "DPoP"})
        claims = self.checker.check(request, access_token=token)
        if claims is None or claims["jkt"] != self.issuer.bound[token]:
            self.checker.problems.append("proof not by the token's key")
            return Reply(401, {"error": "invalid_dpop_proof"})
        nonce = self.checker.nonce
        if nonce is not None and claims.get("nonce") != nonce:
            return Reply(
                401,
                {"error": "use_dpop_nonce"},
                headers={"WWW-Authenticate": 'DPoP error="use_dpop_nonce"', "DPoP-Nonce": nonce},
            )
        return Reply(body={"ok": True, "method": request.method})
