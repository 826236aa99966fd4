"""`oauth_store` and `oauth_prefetch`: tokens shared with other mitmdump processes.

The memory cache stays in front, so a request whose token is in memory never touches the
store. Behind it, `SharedFetch` takes another process's token or fetches for everyone.
Purges travel through the store: a process marks the token it saw rejected, and every
process looks for such marks every `WATCH_INTERVAL` seconds and drops the token too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine

from mitmproxy import ctx, exceptions

from ..model import Credentials
from ..oauth.cache import TokenCache
from ..oauth.client import TokenClient
from ..oauth.response import Token
from ..store.base import StoreError
from ..store.opening import shared_fetch
from ..store.shared import SharedFetch
from .event_log import EventRecorder

log = logging.getLogger(__name__)

WATCH_INTERVAL = 0.25
"""Seconds between looks for tokens another process purged: the bound on how long a rejected
token can still be sent by a process that shares it."""
COUNT_INTERVAL = 10.0
"""Seconds between counts of the stored tokens, for `oauth.status`."""
PREFETCH_CONCURRENCY = 8


class Sharing:
    """The store, if any, between the cache and the token client. A part of the main addon."""

    def __init__(self, cache: TokenCache, client: TokenClient, events: EventRecorder) -> None:
        self.cache = cache
        self.client = client
        self.events = events
        self.shared: SharedFetch | None = None
        self.stored_tokens: int | None = None
        self._watch: asyncio.Task[None] | None = None
        """Looks for purge marks in the current store; none in memory mode."""
        self._running = False
        self._tasks: set[asyncio.Task[None]] = set()
        cache.on_purge = self.announce_purge

    async def fetch(self, creds: Credentials) -> Token:
        """The cache's fetch: through the store when there is one."""
        if self.shared is not None:
            return await self.shared.fetch(creds)
        return await self.client.fetch(creds)

    def configure(self, updated: set[str]) -> None:
        """Raises OptionsError for a store that cannot be used; the previous one stays."""
        if "oauth_store" not in updated:
            if self.shared is not None:
                self.shared.token_timeout = ctx.options.oauth_token_timeout
            return
        try:
            shared = shared_fetch(
                ctx.options.oauth_store,
                self.client.fetch,
                self.cache,
                token_timeout=ctx.options.oauth_token_timeout,
                on_event=self.events.record,
            )
        except (ValueError, StoreError) as e:
            raise exceptions.OptionsError(str(e)) from None
        previous, self.shared = self.shared, shared
        self.stored_tokens = None
        if shared is not None:
            log.info(
                "tokens shared through %s, sealed %s", shared.store.description, shared.sealer.mode
            )
        if previous is not None:
            self._spawn(previous.store.close())
        self._watch_store()

    def running(self) -> None:
        self._running = True
        self._watch_store()

    def _watch_store(self) -> None:
        """One watch per store, from when mitmproxy runs: stopped with the store it watches."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._running and self.shared is not None:
            self._watch = asyncio.get_running_loop().create_task(self.watch(self.shared))

    async def done(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.shared is not None:
            await self.shared.store.close()

    def announce_purge(self, creds: Credentials, token: Token) -> None:
        """The cache dropped a rejected token: tell the others through the store."""
        if self.shared is not None:
            self._spawn(self.shared.purge(creds, token))

    def prefetch(self, credential_sets: list[Credentials]) -> None:
        """Get every credential set's token now, before a request asks (`oauth_prefetch`)."""
        if ctx.options.oauth_prefetch and credential_sets:
            self._spawn(self._prefetch(credential_sets))

    def status_line(self) -> str:
        if self.shared is None:
            return "store: memory (this process only)"
        where = self.shared.store.description
        if self.shared.down is not None:
            return f"store: {where}: unreachable ({self.shared.down})"
        count = "?" if self.stored_tokens is None else str(self.stored_tokens)
        return f"store: {where}: reachable, {count} token(s) stored"

    async def watch(self, shared: SharedFetch) -> None:
        """Drop the tokens other processes purged; count the stored ones now and then."""
        since_count = COUNT_INTERVAL
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            try:
                for creds, fingerprint in await shared.rejected_elsewhere():
                    why = "rejected upstream, as another process said"
                    self.cache.forget(creds, fingerprint, why)
                since_count += WATCH_INTERVAL
                if since_count >= COUNT_INTERVAL and shared.down is None:
                    since_count = 0.0
                    with contextlib.suppress(StoreError):
                        self.stored_tokens = await shared.store.count()
            except Exception:  # a bug of ours must not end the watch: purges would stop
                log.exception("watching the token store failed")

    async def _prefetch(self, credential_sets: list[Credentials]) -> None:
        limit = asyncio.Semaphore(PREFETCH_CONCURRENCY)

        async def one(creds: Credentials) -> None:
            async with limit:
                with contextlib.suppress(Exception):  # the cache has logged the failure
                    await self.cache.get(creds)

        await asyncio.gather(*(one(c) for c in credential_sets))

    def _spawn(self, work: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
