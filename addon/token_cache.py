"""One cached token per credential set, fetched once however many requests wait for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from addon.errors import TokenError
from addon.rules import Credentials, Rule
from addon.token import Token

log = logging.getLogger(__name__)

DEFAULT_EXPIRY_DELTA = 10.0
"""Seconds before expiry at which a token counts as expired (golang/oauth2, KrakenD)."""
DEFAULT_LIFETIME = 3600.0
"""Lifetime assumed when the endpoint sends no `expires_in`: bounded, never "forever"."""


@dataclass
class _Entry:
    token: Token | None = None
    usable_until: float = 0.0
    fetch: asyncio.Task[Token] | None = None


class TokenCache:
    """Hands out tokens, fetching a credential set's token only when it is missing or expired.

    A token counts as expired `expiry_delta` seconds early, but never before
    half its lifetime, so that short-lived tokens are still reused. Requests
    that find the token missing while a fetch is under way wait for that fetch:
    the endpoint sees one request, and its failure reaches every waiter.
    """

    def __init__(
        self,
        fetch: Callable[[Credentials], Awaitable[Token]],
        *,
        expiry_delta: float = DEFAULT_EXPIRY_DELTA,
        default_lifetime: float = DEFAULT_LIFETIME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self.expiry_delta = expiry_delta
        self.default_lifetime = default_lifetime
        self._clock = clock
        self._entries: dict[Credentials, _Entry] = {}
        self._rule_names: dict[Credentials, tuple[str, ...]] = {}

    def use(self, rules: Iterable[Rule]) -> None:
        """Adopt a rule set: tokens of credential sets still in use are kept, others dropped."""
        names: dict[Credentials, list[str]] = {}
        for rule in rules:
            names.setdefault(rule.credentials, []).append(rule.name)
        self._rule_names = {creds: tuple(n) for creds, n in names.items()}
        self._entries = {c: e for c, e in self._entries.items() if c in self._rule_names}

    async def get(self, creds: Credentials) -> Token:
        entry = self._entries.setdefault(creds, _Entry())
        if entry.token is not None and self._clock() < entry.usable_until:
            return entry.token
        if entry.fetch is None:
            reason = "first use" if entry.token is None else "expired"
            entry.fetch = asyncio.create_task(self._refresh(creds, entry, reason))
        # Shielded: a client that hangs up must not cancel the fetch others wait for.
        return await asyncio.shield(entry.fetch)

    async def _refresh(self, creds: Credentials, entry: _Entry, reason: str) -> Token:
        rules = ", ".join(self._rule_names.get(creds, ())) or "?"
        started = self._clock()
        try:
            token = await self._fetch(creds)
        except TokenError as e:
            log.warning(
                "token fetch for rule %s failed (%s) after %.0f ms: %s",
                rules, reason, (self._clock() - started) * 1000, e,
            )  # fmt: skip
            raise
        finally:
            entry.fetch = None
        lifetime = token.expires_in or self.default_lifetime
        entry.token = token
        entry.usable_until = started + lifetime - min(self.expiry_delta, lifetime / 2)
        expires = (
            f"expires_in {token.expires_in} s"
            if token.expires_in
            else f"no expires_in, assuming {lifetime:g} s"
        )
        log.info(
            "token fetched for rule %s (%s) in %.0f ms: sha256:%s, %s, scopes %s",
            rules,
            reason,
            (self._clock() - started) * 1000,
            token.access_token.fingerprint,
            expires,
            " ".join(creds.scopes) or "(none)",
        )
        return token
