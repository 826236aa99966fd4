"""A shared store in front of the token endpoint: one process fetches, the others take its token.

`SharedFetch.fetch` stands where the token client's `fetch` stood, behind the memory cache,
so a request that finds its token in memory never touches the store. On a miss:

1. A stored token that is not yet due for a refresh is taken, with its age: every process
   then counts its lifetime, early expiry and refresh point from the one fetch.
2. Otherwise the process takes the credential set's fetch lock, looks once more, fetches,
   stores the sealed token (until its usable time ends) and lets the lock go. The lock
   lives `LOCK_TTL` seconds and its holder extends it while it waits for the endpoint, so a
   holder that dies blocks the others for at most that long.
3. A process that finds the lock taken looks again every `POLL` seconds, and takes the
   token when it appears or the lock when it is free. It never fails because of the lock:
   past the token timeout it fetches by itself.

Any store failure or slowness (`StoreError`) makes the process fetch as if there were no
store, say so once, and try the store again `RETRY` seconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..model import Credentials
from ..oauth.cache import Fetch, refresh_time, usable_time
from ..oauth.response import Token
from ..secret import Secret
from .base import StoreError, TokenStore
from .keys import credential_material, store_key
from .sealing import Sealer

log = logging.getLogger(__name__)

LOCK_TTL = 3.0
"""Seconds a fetch lock lasts unless its holder extends it: how long a dead holder blocks."""
POLL = 0.05
"""Seconds between looks while another process fetches."""
RETRY = 5.0
"""Seconds before a store that failed is tried again."""
EXTRA_WAIT = 5.0
"""Seconds beyond the token timeout that a process waits for another's fetch."""


class Schedule(Protocol):
    """The cache's timing options, which decide how long a stored token is good for."""

    expiry_delta: float
    default_lifetime: float
    refresh_ahead: float


class SharedFetch:
    def __init__(
        self,
        store: TokenStore,
        fetch: Fetch,
        sealer: Sealer,
        schedule: Schedule,
        *,
        on_event: Callable[[dict[str, object]], None] | None = None,
    ) -> None:
        self.store = store
        self._fetch = fetch
        self.sealer = sealer
        self.schedule = schedule
        self.on_event = on_event
        self.token_timeout = 10.0
        """The token client's timeout: with EXTRA_WAIT, how long another's fetch is awaited."""
        self.down: StoreError | None = None
        """Why the store last failed, until it answers again."""
        self._retry_at = 0.0
        self._keys: dict[str, Credentials] = {}
        """The credential set behind each store key this process used, for purge marks."""
        self._seen_marks: set[tuple[str, str]] = set()

    async def fetch(self, creds: Credentials) -> Token:
        """A token for `creds`: another process's from the store, or one fetched here."""
        if self.down is not None and time.monotonic() < self._retry_at:
            return await self._fetch(creds)
        try:
            material = credential_material(creds)
        except (OSError, ValueError):
            return await self._fetch(creds)  # the token client says what cannot be read
        key = store_key(material)
        self._keys[key] = creds
        try:
            return await self._shared(creds, key, material)
        except StoreError as e:
            self._failed(e)
            return await self._fetch(creds)

    async def purge(self, creds: Credentials, token: Token) -> None:
        """Take a rejected token out of the store, if it is still the stored one, and mark it
        so that every process sharing it drops it too."""
        try:
            material = credential_material(creds)
            key = store_key(material)
            stored = await self.store.get(key)
            record = None if stored is None else self._record(key, material, stored.value)
            if (
                stored is not None
                and record
                and record["access_token"] == token.access_token.reveal()
            ):
                await self.store.delete_if(key, stored.value)
            lifetime = token.expires_in or self.schedule.default_lifetime
            await self.store.mark_purged(key, token.access_token.fingerprint, lifetime)
            self._answered()
        except (OSError, ValueError):
            pass  # an unreadable secret: no store key, and nothing stored under it
        except StoreError as e:
            self._failed(e)

    async def rejected_elsewhere(self) -> list[tuple[Credentials, str]]:
        """The tokens (credential set, fingerprint) that some process has marked as purged
        since the last call: each mark once, so that an endpoint that issues the same token
        again does not have it dropped over and over."""
        if self.down is not None and time.monotonic() < self._retry_at:
            return []
        try:
            marks = await self.store.purged()
        except StoreError as e:
            self._failed(e)
            return []
        self._answered()
        new, self._seen_marks = marks - self._seen_marks, marks
        return [(self._keys[key], fp) for key, fp in new if key in self._keys]

    async def _shared(self, creds: Credentials, key: str, material: bytes) -> Token:
        lock = f"{key}:lock"
        give_up_at = time.monotonic() + self.token_timeout + EXTRA_WAIT
        while True:
            token = await self._take(key, material)
            if token is not None:
                return token
            owner = secrets.token_hex(16)
            if await self.store.acquire(lock, owner, LOCK_TTL):
                self._answered()
                try:
                    token = await self._take(key, material)  # stored while we asked
                    return token or await self._fetch_and_keep(creds, key, material, lock, owner)
                finally:
                    await self._release(lock, owner)
            if time.monotonic() >= give_up_at:
                log.info(
                    "token store: waited %.0f s for another fetch; fetching here",
                    self.token_timeout + EXTRA_WAIT,
                )
                return await self._fetch(creds)
            await asyncio.sleep(POLL)

    async def _take(self, key: str, material: bytes) -> Token | None:
        """The stored token, unless it is missing, unreadable here, or due for a refresh."""
        stored = await self.store.get(key)
        self._answered()
        if stored is None:
            return None
        record = self._record(key, material, stored.value)
        if record is None:
            return None
        expires_in = record["expires_in"]
        lifetime = expires_in or self.schedule.default_lifetime
        schedule = self.schedule
        age = max(0.0, usable_time(lifetime, schedule.expiry_delta) - stored.remaining)
        if age >= refresh_time(lifetime, schedule.expiry_delta, schedule.refresh_ahead):
            return None  # past its refresh point: fetch the next one
        return Token(
            Secret(record["access_token"]),
            record["token_type"],
            expires_in,
            record["scope"],
            age=age,
            source="store",
        )

    def _record(self, key: str, material: bytes, value: bytes) -> dict[str, Any] | None:
        """The token record sealed in `value`, if it opens here, was sealed for `key` (not
        copied from another credential set's), and is not older than its token's lifetime
        (not put back after its time); None otherwise: a miss, never an error."""
        opened = self.sealer.open(material, value)
        if opened is None:
            return None
        plain, sealed_at = opened
        try:
            record = json.loads(plain)
            if not isinstance(record, dict) or record.get("key") != key:
                return None
            if not isinstance(record.get("access_token"), str):
                return None
            lifetime = record["expires_in"] or self.schedule.default_lifetime
            return record if time.time() - sealed_at <= lifetime else None
        except (ValueError, KeyError, TypeError):
            return None  # a value some other version wrote

    async def _fetch_and_keep(
        self, creds: Credentials, key: str, material: bytes, lock: str, owner: str
    ) -> Token:
        started = time.monotonic()
        holding = asyncio.create_task(self._hold(lock, owner))
        try:
            token = await self._fetch(creds)
        finally:
            holding.cancel()
        lifetime = token.expires_in or self.schedule.default_lifetime
        ttl = usable_time(lifetime, self.schedule.expiry_delta) - (time.monotonic() - started)
        if ttl > 0:
            record = {
                "key": key,
                "access_token": token.access_token.reveal(),
                "token_type": token.token_type,
                "expires_in": token.expires_in,
                "scope": token.scope,
            }
            sealed = self.sealer.seal(material, json.dumps(record).encode())
            try:
                await self.store.put(key, sealed, ttl)
            except StoreError as e:
                self._failed(e)  # the token is good: it goes on without the store
        return token

    async def _hold(self, lock: str, owner: str) -> None:
        """Extend the lock while the endpoint is asked, so that nobody else asks too."""
        with contextlib.suppress(StoreError):
            while True:
                await asyncio.sleep(LOCK_TTL / 3)
                await self.store.extend(lock, owner, LOCK_TTL)

    async def _release(self, lock: str, owner: str) -> None:
        try:
            await self.store.release(lock, owner)
        except StoreError as e:
            self._failed(e)  # the lock runs out by itself

    def _failed(self, error: StoreError) -> None:
        self._retry_at = time.monotonic() + RETRY
        if self.down is None:
            log.warning(
                "token store %s failed (%s): going on without it, trying it again every %g s",
                self.store.description,
                error,
                RETRY,
            )
            self._emit("store_down", reason=str(error))
        self.down = error

    def _answered(self) -> None:
        if self.down is not None:
            self.down = None
            log.info("token store %s answers again: tokens are shared", self.store.description)
            self._emit("store_up")

    def _emit(self, event: str, **fields: object) -> None:
        if self.on_event is not None:
            self.on_event({"event": event, "store": self.store.description, **fields})
