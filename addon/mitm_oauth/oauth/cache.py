"""One cached token per credential set, fetched once however many requests wait for it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from ..errors import TokenError
from ..model import Credentials
from .backoff import Backoff
from .response import Token

log = logging.getLogger(__name__)

DEFAULT_EXPIRY_DELTA = 10.0
"""Seconds before expiry at which a token counts as expired (golang/oauth2, KrakenD)."""
DEFAULT_LIFETIME = 3600.0
"""Lifetime assumed when the endpoint sends no `expires_in`: bounded, never "forever"."""
DEFAULT_REFRESH_AHEAD = 0.8
"""Fraction of a token's lifetime after which a request starts a background refresh."""
PURGE_INTERVAL = 10.0
"""At most one purge per credential set in this many seconds, however many 401s arrive."""


@dataclass(frozen=True, slots=True)
class Lease:
    """A token as the cache hands it out, with how long it does: one object per fetched token,
    so a request that takes it from the cache needs no second look-up."""

    token: Token
    usable_until: float | None
    """Wall-clock time (`time.time()`) until which the cache hands the token out; None for a
    token that arrived past it, which goes to the requests that waited for it only."""


@dataclass
class _Entry:
    lease: Lease | None = None
    refresh_at: float = 0.0
    """From here on, a request starts a refresh in the background."""
    usable_until: float = 0.0
    """From here on, the token is not handed out any more."""
    fetch: asyncio.Task[Lease] | None = None
    failures: int = 0
    last_error: TokenError | None = None
    retry_at: float = 0.0
    """No fetch before this, after a failure."""
    last_purge: float = float("-inf")
    purged: bool = False
    """Whether the last token was dropped on the upstream's word, and none has come since."""
    warned_stale: bool = False
    """Whether a token that arrived past its usable time has been explained once."""
    hits: int = 0
    fetches: int = 0
    """Asked of this process's fetch: the token endpoint, or a shared store in front of it."""
    from_store: int = 0
    """Of those, answered with a token another process had fetched."""
    failed_fetches: int = 0
    purges: int = 0

    @property
    def token(self) -> Token | None:
        return None if self.lease is None else self.lease.token


@dataclass(frozen=True)
class Status:
    """One credential set's state, for people: no token, only its fingerprint."""

    credentials: Credentials
    rules: tuple[str, ...]
    state: str
    """missing, fetching, valid, refreshing, failing (token still used), failed, expired."""
    fingerprint: str | None
    source: str | None
    """Where the current token came from: "endpoint" or "store"."""
    usable_for: float | None
    """Seconds the current token will still be handed out."""
    last_error: str | None
    hits: int
    fetches: int
    """Tokens this process fetched from the token endpoint, failures included."""
    from_store: int
    """Tokens taken from a shared store that another process had fetched."""
    failed_fetches: int
    purges: int


Fetch = Callable[[Credentials], Awaitable[Token]]
"""Asks a token endpoint for a credential set's token: `TokenClient.fetch`, or a stand-in."""

Event = dict[str, object]
"""A JSON-ready record of something that happened: fetch, failure, purge."""


class TokenCache:
    """Hands out tokens, fetching a credential set's token only when needed.

    - A token counts as expired `expiry_delta` seconds early, but never
      before half its lifetime, so that short-lived tokens are still reused.
    - After `refresh_ahead` of its lifetime, the next request starts a refresh
      in the background and goes on with the current token: under steady
      traffic nobody waits for a token.
    - Requests that need a token while a fetch is under way wait for that
      fetch: the endpoint sees one request, and its failure reaches them all.
    - After a failure, the endpoint is left alone for a back-off delay;
      meanwhile requests get the still-usable token, or the last error at
      once. Client traffic never multiplies the load on the endpoint.
    - A lifetime counts from when the token was asked for. A token that
      arrives with none of its usable time left (the exchange took longer)
      still goes to the requests that waited for that fetch, as none can have
      a newer one, but to no later request: each later request waits for the
      next fetch, one at a time.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        expiry_delta: float = DEFAULT_EXPIRY_DELTA,
        default_lifetime: float = DEFAULT_LIFETIME,
        refresh_ahead: float = DEFAULT_REFRESH_AHEAD,
        backoff: Backoff | None = None,
        clock: Callable[[], float] = time.monotonic,
        on_event: Callable[[Event], None] | None = None,
        on_purge: Callable[[Credentials, Token], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self.expiry_delta = expiry_delta
        self.default_lifetime = default_lifetime
        self.refresh_ahead = refresh_ahead
        self.backoff = backoff or Backoff()
        self._clock = clock
        self._entries: dict[Credentials, _Entry] = {}
        self._rule_names: dict[Credentials, tuple[str, ...]] = {}
        self.on_event = on_event
        self.on_purge = on_purge
        """Told of each purge, so that processes sharing the token drop it too."""

    def use(self, credential_sets: Mapping[Credentials, tuple[str, ...]]) -> None:
        """Adopt the credential sets of a rule set (see `rules.credential_sets`), with the
        names of their rules: tokens of sets still in use are kept, the others dropped."""
        self._rule_names = dict(credential_sets)
        # Keyed by the new rules' own (equal) objects: a lookup by identity skips __eq__.
        self._entries = {c: self._entries[c] for c in self._rule_names if c in self._entries}

    def cached(self, creds: Credentials) -> Lease | None:
        """The usable token, without waiting; starts a background refresh when it is due."""
        entry = self._entries.get(creds)
        if entry is None or entry.lease is None:
            return None
        now = self._clock()
        if now >= entry.usable_until:
            return None
        if now >= entry.refresh_at and entry.fetch is None and now >= entry.retry_at:
            self._start_fetch(creds, entry, "refresh ahead").add_done_callback(_quietly)
        entry.hits += 1
        return entry.lease

    async def get(self, creds: Credentials) -> Lease:
        """The usable token, or a fetched one; raises TokenError when none can be had."""
        lease = self.cached(creds)
        if lease is not None:
            return lease
        entry = self._entries.setdefault(creds, _Entry())
        now = self._clock()
        if entry.fetch is None:
            if entry.last_error is not None and now < entry.retry_at:
                wait = entry.retry_at - now
                raise dataclasses.replace(
                    entry.last_error,
                    message=f"{entry.last_error.message} (next attempt in {wait:.0f} s)",
                )
            reason = "first use" if entry.token is None else "expired"
            if entry.purged:
                reason = "after purge"
            if entry.last_error is not None:
                reason = "retry"
            self._start_fetch(creds, entry, reason)
        assert entry.fetch is not None
        # Shielded: a client that hangs up must not cancel the fetch others wait for.
        return await asyncio.shield(entry.fetch)

    def purge(self, creds: Credentials, token: Token, why: str) -> bool:
        """Drop `token` if it is still the cached one and no purge happened lately.

        Meant for an upstream that rejects the token (401): the next request
        fetches a new one. Rate-limited so that an upstream that rejects every
        token cannot turn client traffic into token requests.
        """
        entry = self._entries.get(creds)
        now = self._clock()
        if entry is None or entry.token is not token or now - entry.last_purge < PURGE_INTERVAL:
            return False
        entry.last_purge = now
        entry.purges += 1
        _drop(entry)
        log.warning(
            "token sha256:%s for rule %s dropped: %s",
            token.access_token.fingerprint,
            self._names(creds),
            why,
        )
        self._emit("purge", creds, token=token.access_token.fingerprint, why=why)
        if self.on_purge is not None:
            self.on_purge(creds, token)
        return True

    def forget(self, creds: Credentials, fingerprint: str, why: str) -> bool:
        """Drop the cached token if it is the one with `fingerprint`: another process that
        shares it has purged it. Not rate-limited: the purging process was."""
        entry = self._entries.get(creds)
        token = None if entry is None else entry.token
        if entry is None or token is None or token.access_token.fingerprint != fingerprint:
            return False
        _drop(entry)
        log.warning("token sha256:%s for rule %s dropped: %s", fingerprint, self._names(creds), why)
        self._emit("purge", creds, token=fingerprint, why=why)
        return True

    def refresh(self, creds: Credentials) -> bool:
        """Fetch a new token now, in the background; False if a fetch is already under way."""
        entry = self._entries.setdefault(creds, _Entry())
        if entry.fetch is not None:
            return False
        entry.retry_at = 0.0
        self._start_fetch(creds, entry, "forced").add_done_callback(_quietly)
        return True

    def flush(self) -> int:
        """Forget every token and failure; returns how many tokens were dropped."""
        dropped = sum(1 for e in self._entries.values() if e.token is not None)
        self._entries.clear()  # fetches under way still answer their waiters
        return dropped

    def credential_sets(self) -> dict[Credentials, tuple[str, ...]]:
        """Every credential set in use, with the names of the rules that use it."""
        return dict(self._rule_names)

    def status(self) -> list[Status]:
        now = self._clock()
        result = []
        for creds, rules in self._rule_names.items():
            entry = self._entries.get(creds, _Entry())
            usable = entry.token is not None and now < entry.usable_until
            result.append(
                Status(
                    credentials=creds,
                    rules=rules,
                    state=_state(entry, usable),
                    fingerprint=entry.token.access_token.fingerprint if entry.token else None,
                    source=entry.token.source if entry.token else None,
                    usable_for=entry.usable_until - now if usable else None,
                    last_error=str(entry.last_error) if entry.last_error else None,
                    hits=entry.hits,
                    fetches=entry.fetches - entry.from_store,
                    from_store=entry.from_store,
                    failed_fetches=entry.failed_fetches,
                    purges=entry.purges,
                )
            )
        return result

    def _names(self, creds: Credentials) -> str:
        return ", ".join(self._rule_names.get(creds, ())) or "?"

    def _emit(self, event: str, creds: Credentials, **fields: object) -> None:
        if self.on_event is not None:
            self.on_event(
                {"event": event, "rules": list(self._rule_names.get(creds, ())), **fields}
            )

    def _start_fetch(self, creds: Credentials, entry: _Entry, reason: str) -> asyncio.Task[Lease]:
        entry.fetch = asyncio.create_task(self._refresh(creds, entry, reason))
        return entry.fetch

    async def _refresh(self, creds: Credentials, entry: _Entry, reason: str) -> Lease:
        started = self._clock()
        started_at = _wall_time()
        entry.fetches += 1
        try:
            token = await self._fetch(creds)
        except Exception as e:
            error = e if isinstance(e, TokenError) else _internal(e)
            self._failed(creds, entry, reason, error, started, started_at)
            raise error from None
        finally:
            entry.fetch = None
        if token.source != "endpoint":
            entry.from_store += 1
        lifetime = token.expires_in or self.default_lifetime
        issued = started - token.age  # a stored token's lifetime began at its first fetch
        entry.usable_until = issued + usable_time(lifetime, self.expiry_delta)
        entry.refresh_at = issued + refresh_time(lifetime, self.expiry_delta, self.refresh_ahead)
        entry.failures = 0
        entry.last_error = None
        entry.retry_at = 0.0
        expires = (
            f"expires_in {token.expires_in} s"
            if token.expires_in
            else f"no expires_in, assuming {lifetime:g} s"
        )
        received = self._clock()
        stale = received >= entry.usable_until
        wall_until = time.time() + entry.usable_until - received
        entry.lease = lease = Lease(token, None if stale else wall_until)
        entry.purged = False
        if stale:
            expires += ", already past its usable time: sent with the waiting requests only"
            if not entry.warned_stale:
                entry.warned_stale = True
                log.warning(
                    "rule %s: the token endpoint took %.1f s to issue a token that lives %g s: "
                    "each token goes only to the requests that waited for it, and every later "
                    "request waits for a new one; the endpoint sees one request at a time",
                    self._names(creds),
                    received - started,
                    lifetime,
                )
        latency = (received - started) * 1000
        log.info(
            "token %s for rule %s (%s) in %.0f ms: sha256:%s, %s, scopes %s",
            "fetched" if token.source == "endpoint" else f"taken from the {token.source}",
            self._names(creds),
            reason,
            latency,
            token.access_token.fingerprint,
            expires,
            " ".join(creds.scopes) or "(none)",
        )
        self._emit(
            "fetch",
            creds,
            reason=reason,
            started=started_at,
            latency_ms=round(latency),
            expires_in=token.expires_in,
            lifetime=lifetime,
            token=token.access_token.fingerprint,
            scopes=list(creds.scopes),
            source=token.source,
        )
        return lease

    def _failed(
        self,
        creds: Credentials,
        entry: _Entry,
        reason: str,
        error: TokenError,
        started: float,
        started_at: str,
    ) -> None:
        now = self._clock()
        entry.failures += 1
        entry.failed_fetches += 1
        entry.last_error = error
        delay = self.backoff.delay(entry.failures, error)
        entry.retry_at = now + delay
        still = ""
        if entry.token is not None and now < entry.usable_until:
            still = (
                f"; still using sha256:{entry.token.access_token.fingerprint} "
                f"for {entry.usable_until - now:.0f} s"
            )
        kind = "permanent" if error.permanent else "transient"
        log.warning(
            "token fetch for rule %s failed (%s) after %.0f ms: %s; %s failure %d, "
            "next attempt in %.1f s%s",
            self._names(creds),
            reason,
            (now - started) * 1000,
            error,
            kind,
            entry.failures,
            delay,
            still,
        )
        self._emit(
            "failure",
            creds,
            reason=reason,
            started=started_at,
            latency_ms=round((now - started) * 1000),
            message=error.message,
            status=error.status,
            error=error.error,
            error_description=error.error_description,
            body_excerpt=error.body_excerpt,
            extra=dict(error.extra),
            permanent=error.permanent,
            next_attempt_in=round(delay, 1),
            still_using=entry.token.access_token.fingerprint if still and entry.token else None,
        )


def usable_time(lifetime: float, expiry_delta: float) -> float:
    """Seconds after its fetch that a token of `lifetime` is handed out: `expiry_delta` early,
    but never before half its lifetime, so that short-lived tokens are still reused."""
    return lifetime - min(expiry_delta, lifetime / 2)


def refresh_time(lifetime: float, expiry_delta: float, refresh_ahead: float) -> float:
    """Seconds after its fetch from which a request starts the next fetch in the background."""
    return min(lifetime * refresh_ahead, usable_time(lifetime, expiry_delta))


def _drop(entry: _Entry) -> None:
    """Stop handing out the entry's token: the next request fetches, "after purge"."""
    entry.lease = None
    entry.purged = True
    entry.usable_until = entry.refresh_at = 0.0


def _wall_time() -> str:
    """Now, as events give times: read next to the clock that refresh points count on, so that
    events say exactly when a fetch started (an event's own time is when it was written,
    after the log line, which a loaded machine can delay by tens of milliseconds)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def _state(entry: _Entry, usable: bool) -> str:
    if entry.fetch is not None:
        return "refreshing" if usable else "fetching"
    if entry.last_error is not None:
        return "failing" if usable else "failed"
    if usable:
        return "valid"
    return "expired" if entry.token is not None else "missing"


def _internal(e: Exception) -> TokenError:
    """A bug of ours while fetching: logged with its traceback, then treated as transient."""
    log.error("unexpected error while fetching a token", exc_info=e)
    return TokenError(f"internal error while fetching the token ({type(e).__name__})")


def _quietly(task: asyncio.Task[Lease]) -> None:
    """A background refresh's failure is logged by the cache; nobody else awaits it."""
    if not task.cancelled():
        task.exception()
