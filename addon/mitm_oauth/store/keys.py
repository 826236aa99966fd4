"""What a credential set is stored under, and the material its stored tokens are sealed with.

The key is a hash of the whole credential set, secrets and key files included: a rotated
secret, a new scope or another endpoint parameter never finds the old token. Neither the
key nor anything else in the store shows a client id, a secret or a token.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..model import Credentials
from ..secret import SecretValue

KEY_PREFIX = "mitm-oauth:v1:"


def credential_material(creds: Credentials) -> bytes:
    """Everything that decides which token the endpoint issues, secrets and files read now.

    Raises ValueError or OSError when a secret or key file cannot be read, or the set's
    tokens are bound to a key only this process has: the caller then goes on without the
    store (and the token client reports an unreadable file its own way).
    """
    assertion = creds.assertion
    certificate = creds.client_certificate
    parts = {
        "token_url": creds.token_url,
        "client_id": _revealed(creds.client_id),
        "client_secret": _revealed(creds.client_secret),
        "auth_style": str(creds.auth_style),
        "scopes": list(creds.scopes),
        "endpoint_params": [[name, list(values)] for name, values in creds.endpoint_params],
        "ca_file": _content(creds.ca_file),
        "assertion": None
        if assertion is None
        else {
            "algorithm": assertion.algorithm,
            "audience": assertion.audience,
            "lifetime": assertion.lifetime,
            "key_id": assertion.key_id,
            "private_key": _content(assertion.private_key_file),
        },
        "client_certificate": None
        if certificate is None
        else {"cert": _content(certificate.cert_file), "key": _content(certificate.key_file)},
        "token_headers": [list(pair) for pair in creds.token_headers],
        "request_format": creds.request_format,
        "dpop": None if creds.dpop is None else _dpop_key(creds),
    }
    return json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()


def store_key(material: bytes) -> str:
    """The name a credential set's token is stored under: a hash, nothing readable."""
    return KEY_PREFIX + hashlib.sha256(b"mitm-oauth store key\0" + material).hexdigest()


def _dpop_key(creds: Credentials) -> dict[str, str | None]:
    """A DPoP-bound token is only usable with its key: processes that share the key file
    share the token. A key made in memory is this process's alone, and so are its tokens."""
    assert creds.dpop is not None
    if creds.dpop.key_file is None:
        raise ValueError("a DPoP key made in memory is not shared")
    return {"algorithm": creds.dpop.algorithm, "key": _content(creds.dpop.key_file)}


def _revealed(value: SecretValue | None) -> str | None:
    return None if value is None else value.reveal()


def _content(path: str | None) -> str | None:
    return None if path is None else Path(path).read_bytes().hex()
