"""Opening the store that `oauth_store` names, and saying how it is."""

from __future__ import annotations

import os

from .base import StoreError, TokenStore
from .redis import RedisStore
from .spec import StoreSpec
from .sqlite import SQLiteStore


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
