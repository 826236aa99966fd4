"""JWT client assertions (RFC 7523 §2.2): a client proves who it is with a signed token.

`client_secret_jwt` signs with the client secret (HMAC); `private_key_jwt`
signs with a private key whose public half the identity provider knows, so
no shared secret crosses the network. Signing is PyJWT's (with the
`cryptography` package mitmproxy already depends on).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import jwt
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ..model import AssertionSettings, AuthStyle

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

HMAC_ALGORITHMS = {"HS256": 32, "HS384": 48, "HS512": 64}
"""Each HMAC algorithm and the shortest key RFC 7518 §3.2 allows for it, in bytes."""
EC_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
KEY_ALGORITHMS = (*RSA_ALGORITHMS, *EC_CURVES)
MIN_RSA_BITS = 2048
"""RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used"."""

DEFAULT_ALGORITHM = {AuthStyle.CLIENT_SECRET_JWT: "HS256", AuthStyle.PRIVATE_KEY_JWT: "RS256"}
MAX_LIFETIME = 3600

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def check_secret_length(algorithm: str, secret: str) -> None:
    """Raise ValueError when `secret` is too short to be an HMAC key for `algorithm`."""
    needed = HMAC_ALGORITHMS[algorithm]
    if len(secret.encode()) < needed:
        fallback = " or HS256" if algorithm != "HS256" else ""
        raise ValueError(
            f"the client secret is shorter than the {needed} bytes {algorithm} needs "
            f"(RFC 7518 §3.2); choose a longer secret{fallback}"
        )


def load_signing_key(path: str, algorithm: str) -> SigningKey:
    """The unencrypted PEM private key in `path`, checked to fit `algorithm`.

    Raises ValueError naming the file and the problem, never the key.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ValueError(f"cannot read {path} ({type(e).__name__})") from None
    try:
        key = load_pem_private_key(data, password=None)
    except TypeError:
        raise ValueError(f"{path} is encrypted; give an unencrypted PEM key") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(f"{path} is not a PEM private key") from None
    if algorithm in RSA_ALGORITHMS:
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError(f"{path} is not an RSA key, which {algorithm} needs")
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"{path} has {key.key_size} bits; {algorithm} needs {MIN_RSA_BITS}")
        return key
    curve = EC_CURVES[algorithm]
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, curve):
        raise ValueError(f"{path} is not an EC {curve.name} key, which {algorithm} needs")
    return key


def client_assertion(
    settings: AssertionSettings,
    *,
    client_id: str,
    client_secret: str | None,
    token_url: str,
    now: float | None = None,
) -> str:
    """A fresh signed assertion: `iss` = `sub` = client_id, a unique `jti`, a short `exp`.

    Raises ValueError when the key is unusable (a rotated key file may have gone bad).
    """
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": settings.audience or token_url,
        "jti": secrets.token_urlsafe(24),
        "iat": issued,
        "exp": issued + settings.lifetime,
    }
    headers = {"kid": settings.key_id} if settings.key_id else None
    key: SigningKey | bytes
    if settings.algorithm in HMAC_ALGORITHMS:
        if client_secret is None:
            raise ValueError(f"{settings.algorithm} assertions need a client secret")
        check_secret_length(settings.algorithm, client_secret)
        key = client_secret.encode()
    else:
        assert settings.private_key_file is not None  # the rules loader makes sure
        key = load_signing_key(settings.private_key_file, settings.algorithm)
    return jwt.encode(claims, key, algorithm=settings.algorithm, headers=headers)
