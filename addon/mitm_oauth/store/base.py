"""What every store does, and how it fails."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

DEFAULT_TIMEOUT = 0.25
"""Seconds a store operation may take before the process goes on without the store."""


class StoreError(Exception):
    """The store failed or was too slow: the caller goes on without it. The message holds
    no password and no stored value."""


@dataclass(frozen=True)
class Stored:
    value: bytes
    remaining: float
    """Seconds until the store drops it, by the store's own clock."""


class TokenStore(Protocol):
    """A store of sealed tokens, fetch locks and purge marks, shared between processes.

    Every method raises StoreError when the store fails or takes longer than its timeout.
    """

    description: str
    """What the store is, for logs and status: no password."""

    async def get(self, key: str) -> Stored | None: ...

    async def put(self, key: str, value: bytes, ttl: float) -> None: ...

    async def delete_if(self, key: str, value: bytes) -> bool:
        """Delete `key` only if it still holds `value`."""
        ...

    async def acquire(self, lock: str, owner: str, ttl: float) -> bool:
        """Take `lock` for `ttl` seconds, if nobody holds it (or its holder's time ran out)."""
        ...

    async def extend(self, lock: str, owner: str, ttl: float) -> bool: ...

    async def release(self, lock: str, owner: str) -> None: ...

    async def mark_purged(self, key: str, fingerprint: str, ttl: float) -> None:
        """Say, for `ttl` seconds, that the token with `fingerprint` under `key` was rejected."""
        ...

    async def purged(self) -> set[tuple[str, str]]:
        """Every (key, fingerprint) marked as purged and not yet past its time."""
        ...

    async def count(self) -> int:
        """How many tokens the store holds."""
        ...

    async def close(self) -> None: ...
