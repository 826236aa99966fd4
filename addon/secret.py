"""Values that must never be printed: client secrets and access tokens."""

from __future__ import annotations

import hashlib


def fingerprint(value: str) -> str:
    """Return the first 8 hex digits of the SHA-256 of `value`.

    Enough to tell two tokens apart in a log or to see that a token changed,
    useless for reconstructing it.
    """
    return hashlib.sha256(value.encode()).hexdigest()[:8]


class Secret:
    """A string that hides itself from `repr()`, `str()`, f-strings and logs.

    The value is only reachable through `reveal()`, so every place that puts a
    secret on the wire is easy to find, and an accidental `%s` prints a
    fingerprint instead of the secret.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    @property
    def fingerprint(self) -> str:
        return fingerprint(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret(sha256:{self.fingerprint})"

    __str__ = __repr__
