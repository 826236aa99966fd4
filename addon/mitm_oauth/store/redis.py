"""The store for a fleet: Redis (or Valkey, which speaks the same protocol).

Times are Redis's own: a token's time to live is a `PX` the server counts down, purge
marks expire by the server's `TIME`, so clock skew between machines cannot keep a token
alive. A lock is `SET NX PX` with a random owner, extended and let go by compare-and-set
scripts, so a process never touches a lock another has taken over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from .base import DEFAULT_TIMEOUT, Stored, StoreError
from .keys import KEY_PREFIX
from .spec import StoreSpec

T = TypeVar("T")

PURGES = f"{KEY_PREFIX}purges"
"""A sorted set of "key fingerprint" members, scored by when each mark runs out (ms)."""

_DELETE_IF = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
)
_EXTEND_IF = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
)
_NOW_MS = "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000) "
_MARK = (
    _NOW_MS + "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
    "redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1]) return 1"
)
_MARKED = _NOW_MS + "return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')"


class RedisStore:
    def __init__(self, spec: StoreSpec, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.description = spec.display
        self.timeout = timeout
        self._redis = Redis.from_url(
            spec.target,
            password=spec.password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # A pooled connection from before a Redis restart fails once: that is not the
            # store being down, so the call is tried once more, on a new connection.
            retry=Retry(NoBackoff(), 1),
            retry_on_error=[RedisConnectionError],
        )

    async def get(self, key: str) -> Stored | None:
        async def work() -> Stored | None:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.pttl(key)
                value, ttl = await pipe.execute()
            return None if value is None or ttl <= 0 else Stored(value, ttl / 1000)

        return await self._run(work())

    async def put(self, key: str, value: bytes, ttl: float) -> None:
        await self._run(self._redis.set(key, value, px=_ms(ttl)))

    async def delete_if(self, key: str, value: bytes) -> bool:
        return bool(await self._run(self._script(_DELETE_IF, [key], [value])))

    async def acquire(self, lock: str, owner: str, ttl: float) -> bool:
        return bool(await self._run(self._redis.set(lock, owner, nx=True, px=_ms(ttl))))

    async def extend(self, lock: str, owner: str, ttl: float) -> bool:
        return bool(await self._run(self._script(_EXTEND_IF, [lock], [owner, _ms(ttl)])))

    async def release(self, lock: str, owner: str) -> None:
        await self._run(self._script(_DELETE_IF, [lock], [owner]))

    async def mark_purged(self, key: str, fingerprint: str, ttl: float) -> None:
        await self._run(self._script(_MARK, [PURGES], [f"{key} {fingerprint}", _ms(ttl)]))

    async def purged(self) -> set[tuple[str, str]]:
        members = await self._run(self._script(_MARKED, [PURGES], []))
        marks = (bytes(m).decode("utf-8", "replace").split(" ") for m in members)
        return {(mark[0], mark[1]) for mark in marks if len(mark) == 2}  # others: not ours

    async def count(self) -> int:
        async def work() -> int:
            found = 0
            async for name in self._redis.scan_iter(match=f"{KEY_PREFIX}*", count=1000):
                found += not bytes(name).endswith(b":lock") and bytes(name) != PURGES.encode()
            return found

        return await self._run(work())

    async def close(self) -> None:
        await self._redis.aclose()

    def _script(self, source: str, keys: list[str], args: list[Any]) -> Awaitable[Any]:
        return self._redis.eval(source, len(keys), *keys, *args)

    async def _run(self, work: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(work, self.timeout)
        except TimeoutError:
            raise StoreError(
                f"{self.description}: no answer within {self.timeout * 1000:.0f} ms"
            ) from None
        except (RedisError, OSError) as e:
            raise StoreError(f"{self.description}: {e}") from None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
