"""`oauth_store`: which store, if any, tokens are shared through."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from ..config.environment import UnsetVariable, expand

PASSWORD_VARIABLE = "OAUTH_STORE_PASSWORD"
"""The Redis password when the URL has none: it then stays off the command line."""
REDIS_SCHEMES = ("redis", "rediss", "unix")
FORMS = "memory, sqlite:PATH, redis://[user:password@]host:port[/db], rediss://… or unix:///path"


@dataclass(frozen=True)
class StoreSpec:
    """A parsed `oauth_store`. `target` (a path, or a URL that may hold a password) is kept out
    of `repr()`; `display` is what logs and status show."""

    kind: str
    """"memory", "sqlite" or "redis"."""
    target: str = field(default="", repr=False)
    display: str = "memory"
    password: str | None = field(default=None, repr=False)
    """From OAUTH_STORE_PASSWORD, for a Redis URL without one."""


MEMORY = StoreSpec("memory")


def parse_store(value: str, environ: Mapping[str, str] = os.environ) -> StoreSpec:
    """Raise ValueError, with a message that holds no password, for a value that is none of
    the forms; `${VAR}` in the value comes from `environ`."""
    value = value.strip()
    if value in ("", "memory"):
        return MEMORY
    if value.startswith("sqlite:"):
        path = _expanded(value.removeprefix("sqlite:"), environ)
        if not path:
            raise ValueError("oauth_store: sqlite: needs a file, as in sqlite:/var/lib/oauth.db")
        return StoreSpec("sqlite", path, f"sqlite:{path}")
    url = _expanded(value, environ)
    parts = urlsplit(url)
    if parts.scheme not in REDIS_SCHEMES:
        raise ValueError(f"oauth_store must be {FORMS}; got {_shown(parts)!r}")
    if parts.scheme == "unix":
        if not parts.path:
            raise ValueError("oauth_store: unix:// needs the socket's path: unix:///path/to.sock")
    else:
        _check_network(parts)
    password = None if parts.password else environ.get(PASSWORD_VARIABLE) or None
    return StoreSpec("redis", url, _shown(parts), password)


def _expanded(value: str, environ: Mapping[str, str]) -> str:
    try:
        return expand(value, environ)
    except UnsetVariable as e:
        raise ValueError(f"oauth_store: {e}") from None


def _check_network(parts: SplitResult) -> None:
    shown = _shown(parts)
    if not parts.hostname:
        raise ValueError(f"oauth_store: {shown!r} has no host")
    try:
        parts.port  # noqa: B018  (parsing it is the check)
    except ValueError:
        raise ValueError(f"oauth_store: {shown!r} has a port that is not a number") from None
    database = parts.path.strip("/")
    if database and not database.isdigit():
        raise ValueError(f"oauth_store: {shown!r}: the database is a number, as in /0")


def _shown(parts: SplitResult) -> str:
    """The URL with its password (in the user part, or a `password=` parameter, which Redis
    clients read too) replaced by ***."""
    if parts.query:
        query = [(n, "***" if n.lower() == "password" else v) for n, v in parse_qsl(parts.query)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if not parts.netloc:
        return f"{parts.scheme}://{parts.path}" + (f"?{parts.query}" if parts.query else "")
    return urlunsplit(parts)
