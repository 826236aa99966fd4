"""Opening the store that `oauth_store` names, and saying how it is."""

from __future__ import annotations

import os
from collections.abc import Callable

from ..oauth.cache import Fetch
from .base import StoreError, TokenStore
from .redis import RedisStore
from .sealing import Sealer, configured_keys
from .shared import Schedule, SharedFetch
from .spec import StoreSpec, parse_store
from .sqlite import SQLiteStore


def shared_fetch(
    option: str,
    fetch: Fetch,
    schedule: Schedule,
    *,
    token_timeout: float,
    on_event: Callable[[dict[str, object]], None] | None = None,
) -> SharedFetch | None:
    """The store `option` (an `oauth_store` value) names, in front of `fetch`; None for memory.

    Raises ValueError or StoreError, with one line to show, for a malformed option or
    OAUTH_STORE_KEY, or a SQLite file that cannot be opened.
    """
    spec = parse_store(option)
    if spec.kind == "memory":
        return None
    sealer = Sealer(configured_keys())
    store = open_store(spec)
    assert store is not None
    shared = SharedFetch(store, fetch, sealer, schedule, on_event=on_event)
    shared.token_timeout = token_timeout
    return shared


def open_store(spec: StoreSpec) -> TokenStore | None:
    """The store `spec` names (None for memory), checked now where that can be done: a SQLite
    file must open (StoreError); a Redis that is down may come up later."""
    if spec.kind == "memory":
        return None
    if spec.kind == "sqlite":
        store = SQLiteStore(os.path.expanduser(spec.target))
        store.check()
        return store
    return RedisStore(spec)


async def describe(store: TokenStore) -> str:
    """One line on the store: reachable with its token count, or why not."""
    try:
        return f"store: {store.description}: reachable, {await store.count()} token(s) stored"
    except StoreError as e:
        return f"store: {store.description}: unreachable ({e})"
