"""Values that must never be printed: client secrets and access tokens."""

from __future__ import annotations

import hashlib


def fingerprint(value: str) -> str:
    """Return the first 8 hex digits of the SHA-256 of `value`.

    Enough to tell two tokens apart in a log or to see that a token changed,
    useless for reconstructing it.
    """
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def redacted(digest: str) -> str:
    """What stands in for a token cut out of a flow, given its `fingerprint`: one spelling
    for headers and token exchanges alike, so that an operator can match them up."""
    return f"[redacted sha256:{digest}]"


class Secret:
    """A string that hides itself from `repr()`, `str()`, f-strings and logs.

    The value is only reachable through `reveal()`, so every place that puts a
    secret on the wire is easy to find, and an accidental `%s` prints a
    fingerprint instead of the secret.
    """

    __slots__ = ("_fingerprint", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        self._fingerprint: str | None = None

    def reveal(self) -> str:
        return self._value

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:  # computed once: it is logged per request
            self._fingerprint = fingerprint(self._value)
        return self._fingerprint

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret(sha256:{self.fingerprint})"

    __str__ = __repr__


class SecretFile:
    """A secret kept in a file and read at each use, so a rotation is picked up.

    Rotate it by writing a new file and renaming it over the old one: a reader
    then sees either the old or the new secret, never half of one. One trailing
    newline (what `echo` and most editors add) is not part of the secret; an
    empty file is an error, never an empty secret.
    """

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path

    def reveal(self) -> str:
        """The file's current content; raises ValueError naming the file, never its content."""
        try:
            with open(self.path, encoding="utf-8") as f:
                value = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"cannot read {self.path} ({type(e).__name__})") from None
        value = value.removesuffix("\n").removesuffix("\r")
        if not value:
            raise ValueError(f"{self.path} is empty")
        return value

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.reveal())

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretFile) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"SecretFile({self.path!r})"

    __str__ = __repr__


SecretValue = Secret | SecretFile
"""Where a credential comes from: the rules file (or environment), or a file read at each use."""
