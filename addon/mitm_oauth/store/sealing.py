"""Stored tokens are sealed: encrypted and authenticated, never in the store in clear.

With `OAUTH_STORE_KEY` (Fernet keys, comma-separated: the first seals, all open, so keys
can be rotated), every process that has the keys can open every stored token. Without it,
each credential set's tokens are sealed with a key derived from its own secret material:
only a process that holds the secret can read the token, which it could fetch anyway.
A value that does not open is a miss, never an error.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_VARIABLE = "OAUTH_STORE_KEY"


def configured_keys(environ: Mapping[str, str] = os.environ) -> MultiFernet | None:
    """The keys in OAUTH_STORE_KEY, or None when it is unset; ValueError for a malformed one."""
    text = environ.get(KEY_VARIABLE, "").strip()
    if not text:
        return None
    keys = [k.strip() for k in text.split(",")]
    fernets = []
    for number, key in enumerate(keys, 1):
        try:
            fernets.append(Fernet(key))
        except ValueError:
            raise ValueError(
                f"{KEY_VARIABLE}: key {number} of {len(keys)} is not a Fernet key "
                "(32 bytes in URL-safe base64, as Fernet.generate_key() makes them)"
            ) from None
    return MultiFernet(fernets)


class Sealer:
    """Seals and opens stored values, with the configured keys or per credential set."""

    def __init__(self, keys: MultiFernet | None = None) -> None:
        self.keys = keys

    @property
    def mode(self) -> str:
        """How values are sealed, for the log."""
        if self.keys is not None:
            return f"with {KEY_VARIABLE}"
        return "with a key per credential set, derived from its secret"

    def seal(self, material: bytes, value: bytes) -> bytes:
        return self._fernet(material).encrypt(value)

    def open(self, material: bytes, sealed: bytes) -> tuple[bytes, float] | None:
        """The value and when it was sealed (epoch seconds), or None when it was sealed with
        another key, tampered with, or is not a sealed value at all."""
        fernet = self._fernet(material)
        try:
            return fernet.decrypt(sealed), float(fernet.extract_timestamp(sealed))
        except (InvalidToken, TypeError):
            return None

    def _fernet(self, material: bytes) -> Fernet | MultiFernet:
        if self.keys is not None:
            return self.keys
        derive = HKDF(hashes.SHA256(), 32, salt=b"mitm-oauth store", info=b"sealing key v1")
        return Fernet(base64.urlsafe_b64encode(derive.derive(material)))
