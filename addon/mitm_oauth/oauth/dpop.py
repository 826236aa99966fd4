"""DPoP proofs (RFC 9449): a JWT per request that shows the sender holds the token's key.

A sender-constrained token is only usable with proofs signed by the key it was bound to:
the proxy holds that key and signs one proof per token request and per API request. The
private key never leaves the process: `DPoPKey`'s repr shows the algorithm and the key's
thumbprint (`jkt`, RFC 7638), which is also what the authorization server binds the token to.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from ..file_version import FileVersion, file_version
from ..model import Credentials

ALGORITHMS = ("ES256", "RS256", "PS256")
DEFAULT_ALGORITHM = "ES256"
PROOF_TYPE = "dpop+jwt"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}
"""RFC 7638 §3.2: the required members of each key type, in lexicographic order."""

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class DPoPKey:
    """A key that signs proofs: its algorithm, public JWK and thumbprint; the private part
    stays out of repr()."""

    algorithm: str
    private_key: PrivateKey = field(repr=False)
    jwk: dict[str, Any] = field(repr=False)
    thumbprint: str
    """The key's RFC 7638 thumbprint, base64url: the `jkt` a bound token carries."""


def generate_key(algorithm: str = DEFAULT_ALGORITHM) -> DPoPKey:
    """A new key pair for `algorithm`, held in memory only."""
    private: PrivateKey
    if algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif algorithm in ("RS256", "PS256"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        raise ValueError(f"dpop_alg must be one of {', '.join(ALGORITHMS)}")
    return _key(algorithm, private)


def load_key(path: str, algorithm: str | None = None) -> DPoPKey:
    """The PEM private key in `path`; ValueError naming the file (never its content) when it
    cannot be read, is not an unencrypted EC P-256 or RSA key, or does not fit `algorithm`."""
    try:
        private = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        reason = (
            e.strerror
            if isinstance(e, OSError) and e.strerror
            else "not an unencrypted PEM private key"
        )
        raise ValueError(f"{path}: {reason}") from None
    if isinstance(private, ec.EllipticCurvePrivateKey):
        if not isinstance(private.curve, ec.SECP256R1):
            raise ValueError(f"{path}: an EC key must be on P-256 for ES256")
        chosen = algorithm or "ES256"
        if chosen != "ES256":
            raise ValueError(f"{path}: an EC P-256 key signs ES256, not {chosen}")
        return _key(chosen, private)
    if isinstance(private, rsa.RSAPrivateKey):
        chosen = algorithm or "RS256"
        if chosen not in ("RS256", "PS256"):
            raise ValueError(f"{path}: an RSA key signs RS256 or PS256, not {chosen}")
        if private.key_size < 2048:
            raise ValueError(f"{path}: an RSA key must have at least 2048 bits")
        return _key(chosen, private)
    raise ValueError(f"{path}: a DPoP key is EC P-256 or RSA")


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638: SHA-256 over the required members, sorted, without whitespace; base64url."""
    members = _THUMBPRINT_MEMBERS[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return _b64(hashlib.sha256(canonical.encode()).digest())


def target_uri(url: str) -> str:
    """The `htu` of a request to `url` (RFC 9449 §4.2): scheme, host and path, without query
    and fragment, normalized as the server compares it (lower case, no default port)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    authority = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return f"{scheme}://{authority}{parts.path or '/'}"


def proof(
    key: DPoPKey,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    nonce: str | None = None,
    now: float | None = None,
) -> str:
    """A fresh proof for one request: `ath` binds it to `access_token` (API requests), `nonce`
    is the server's latest, if it gave one."""
    claims: dict[str, Any] = {
        "jti": secrets.token_urlsafe(16),
        "htm": method.upper(),
        "htu": target_uri(url),
        "iat": int(time.time() if now is None else now),
    }
    if access_token is not None:
        claims["ath"] = _b64(hashlib.sha256(access_token.encode("ascii")).digest())
    if nonce is not None:
        claims["nonce"] = nonce
    headers = {"typ": PROOF_TYPE, "jwk": key.jwk}
    return jwt.encode(claims, key.private_key, algorithm=key.algorithm, headers=headers)


class DPoPKeys:
    """Each DPoP credential set's key: read from its file (again once the file changes), or
    made on first use and kept, in memory only, for as long as the process runs."""

    def __init__(self) -> None:
        self._made: dict[Credentials, DPoPKey] = {}
        self._loaded: dict[tuple[str, str | None], tuple[FileVersion | None, DPoPKey]] = {}

    def key(self, creds: Credentials) -> DPoPKey:
        """Raises ValueError for a key file that cannot be used."""
        settings = creds.dpop
        assert settings is not None
        if settings.key_file is None:
            if creds not in self._made:
                self._made[creds] = generate_key(settings.algorithm or DEFAULT_ALGORITHM)
            return self._made[creds]
        name = (settings.key_file, settings.algorithm)
        version = file_version(settings.key_file)
        known = self._loaded.get(name)
        if known is None or known[0] != version:
            known = (version, load_key(settings.key_file, settings.algorithm))
            self._loaded[name] = known
        return known[1]


class Nonces:
    """The newest `DPoP-Nonce` each server gave (RFC 9449 §8, §9), by origin."""

    def __init__(self) -> None:
        self._by_origin: dict[str, str] = {}

    def get(self, url: str) -> str | None:
        return self._by_origin.get(_origin(url))

    def update(self, url: str, nonce: str | None) -> None:
        if nonce:
            self._by_origin[_origin(url)] = nonce


class RequestProofs:
    """Proofs for API requests: each credential set's key, and each API's newest nonce."""

    def __init__(self, keys: DPoPKeys) -> None:
        self.keys = keys
        self.nonces = Nonces()

    def proof(self, key: DPoPKey, method: str, url: str, access_token: str) -> str:
        """A fresh proof for one request, with the API's newest nonce."""
        return proof(key, method, url, access_token=access_token, nonce=self.nonces.get(url))

    def thumbprint(self, creds: Credentials) -> str | None:
        """The `jkt` of a DPoP credential set's key, for the operator; None without one."""
        try:
            return self.keys.key(creds).thumbprint if creds.dpop is not None else None
        except ValueError:
            return None


def _origin(url: str) -> str:
    """scheme://host[:port], normalized as in `target_uri`."""
    scheme, _, rest = target_uri(url).partition("://")
    return f"{scheme}://{rest.partition('/')[0]}"


def _key(algorithm: str, private: PrivateKey) -> DPoPKey:
    public = private.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    public_jwk = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    return DPoPKey(algorithm, private, public_jwk, thumbprint(public_jwk))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
