"""The cache: one fetch per credential set, early expiry, bounded lifetimes, shared failures."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from mitm_oauth.errors import TokenError
from mitm_oauth.model import Credentials, Match, Rule, credential_sets
from mitm_oauth.oauth.cache import Lease, TokenCache
from mitm_oauth.oauth.response import Token
from mitm_oauth.secret import Secret

A = Credentials("https://idp.example/token", Secret("a"), Secret("secret-a"))
B = Credentials("https://idp.example/token", Secret("b"), Secret("secret-b"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Endpoint:
    """A fetch function that counts calls; `gate` holds fetches until a test opens it."""

    def __init__(self, expires_in: int | None = 3600) -> None:
        self.expires_in = expires_in
        self.calls: list[Credentials] = []
        self.gate: asyncio.Event | None = None
        self.error: TokenError | None = None

    async def __call__(self, creds: Credentials) -> Token:
        self.calls.append(creds)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        name = creds.client_id.reveal()
        return Token(Secret(f"{name}-{len(self.calls)}"), expires_in=self.expires_in)


def make(expires_in: int | None = 3600, **kw: float) -> tuple[TokenCache, Endpoint, Clock]:
    """A cache with refresh-ahead off unless asked for, so expiry tests see expiry alone."""
    endpoint, clock = Endpoint(expires_in), Clock()
    kw.setdefault("refresh_ahead", 1.0)
    return TokenCache(endpoint, clock=clock, **kw), endpoint, clock


def value(lease: Lease) -> str:
    return lease.token.access_token.reveal()


def test_token_is_reused_until_ten_seconds_before_expiry():
    cache, _endpoint, clock = make(expires_in=100)

    async def scenario() -> list[str]:
        got = [value(await cache.get(A))]
        clock.now += 89.9
        got.append(value(await cache.get(A)))
        clock.now += 0.1
        got.append(value(await cache.get(A)))
        return got

    assert asyncio.run(scenario()) == ["a-1", "a-1", "a-2"]


def test_a_lease_says_until_when_its_token_is_handed_out():
    cache, _endpoint, clock = make(expires_in=100)

    async def scenario() -> tuple[Lease, Lease | None]:
        fetched = await cache.get(A)
        clock.now += 50
        return fetched, cache.cached(A)

    before = time.time()
    fetched, cached = asyncio.run(scenario())
    assert fetched.usable_until is not None
    assert before + 90 <= fetched.usable_until <= time.time() + 90  # 100 s less the 10 s delta
    assert cached is fetched  # one object per token: nothing is built per request


@pytest.mark.parametrize(("expires_in", "reuse_for"), [(4, 2.0), (20, 10.0), (1, 0.5)])
def test_short_lived_tokens_are_kept_at_least_half_their_lifetime(expires_in, reuse_for):
    cache, endpoint, clock = make(expires_in=expires_in)

    async def scenario() -> None:
        await cache.get(A)
        clock.now += reuse_for - 0.01
        await cache.get(A)
        assert len(endpoint.calls) == 1
        clock.now += 0.01
        await cache.get(A)
        assert len(endpoint.calls) == 2

    asyncio.run(scenario())


def test_missing_expires_in_gets_the_default_lifetime_not_forever():
    cache, endpoint, clock = make(expires_in=None, default_lifetime=600, expiry_delta=10)

    async def scenario() -> None:
        await cache.get(A)
        clock.now += 589.9
        await cache.get(A)
        assert len(endpoint.calls) == 1
        clock.now += 0.2
        await cache.get(A)
        assert len(endpoint.calls) == 2

    asyncio.run(scenario())


def test_expiry_delta_is_configurable():
    cache, endpoint, clock = make(expires_in=100, expiry_delta=30)

    async def scenario() -> None:
        await cache.get(A)
        clock.now += 70
        await cache.get(A)
        assert len(endpoint.calls) == 2

    asyncio.run(scenario())


def test_credential_sets_have_their_own_tokens():
    cache, _endpoint, _ = make()

    async def scenario() -> list[str]:
        return [value(await cache.get(c)) for c in (A, B, A, B)]

    assert asyncio.run(scenario()) == ["a-1", "b-2", "a-1", "b-2"]


@pytest.mark.parametrize("waiters", [1, 10, 100, 1000])
def test_concurrent_misses_share_one_fetch(waiters):
    cache, endpoint, _ = make()

    async def scenario() -> set[str]:
        endpoint.gate = asyncio.Event()
        tasks = [asyncio.create_task(cache.get(A)) for _ in range(waiters)]
        await asyncio.sleep(0)
        endpoint.gate.set()
        return {value(t) for t in await asyncio.gather(*tasks)}

    assert asyncio.run(scenario()) == {"a-1"}
    assert len(endpoint.calls) == 1


def test_a_failure_reaches_every_waiter_then_backs_off():
    cache, endpoint, clock = make()
    endpoint.error = TokenError("down")

    async def scenario() -> list[object]:
        endpoint.gate = asyncio.Event()
        tasks = [asyncio.create_task(cache.get(A)) for _ in range(20)]
        await asyncio.sleep(0)
        endpoint.gate.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        endpoint.error = None
        with pytest.raises(TokenError, match=r"down \(next attempt in \d+ s\)"):
            await cache.get(A)  # within the back-off: the last error, no new request
        assert len(endpoint.calls) == 1
        clock.now += 1.0  # the first back-off is at most 1 s
        results.append(value(await cache.get(A)))
        return results

    results = asyncio.run(scenario())
    assert all(isinstance(r, TokenError) for r in results[:20])
    assert results[20] == "a-2"
    assert len(endpoint.calls) == 2


def test_a_waiter_that_gives_up_does_not_cancel_the_fetch():
    cache, endpoint, _ = make()

    async def scenario() -> str:
        endpoint.gate = asyncio.Event()
        impatient = asyncio.create_task(cache.get(A))
        await asyncio.sleep(0)
        impatient.cancel()
        patient = asyncio.create_task(cache.get(A))
        await asyncio.sleep(0)
        endpoint.gate.set()
        return value(await patient)

    assert asyncio.run(scenario()) == "a-1"
    assert len(endpoint.calls) == 1


def test_reload_keeps_tokens_of_credential_sets_still_in_use():
    cache, _endpoint, _ = make()
    rule_a = Rule("ra", Match("a.example"), A)
    rule_b = Rule("rb", Match("b.example"), B)

    async def scenario() -> list[str]:
        cache.use(credential_sets([rule_a, rule_b]))
        await cache.get(A)
        await cache.get(B)
        cache.use(credential_sets([rule_a]))
        cache.use(credential_sets([rule_a, rule_b]))
        return [value(await cache.get(A)), value(await cache.get(B))]

    assert asyncio.run(scenario()) == ["a-1", "b-3"]


def test_fetches_are_logged_with_a_fingerprint_never_the_token(caplog):
    cache, endpoint, clock = make(expires_in=100)
    cache.use(
        credential_sets(
            [Rule("billing", Match("a.example"), A), Rule("invoices", Match("b.example"), A)]
        )
    )
    caplog.set_level(logging.DEBUG)

    async def scenario() -> None:
        first = await cache.get(A)
        clock.now += 95
        await cache.get(A)
        endpoint.error = TokenError("refused", error="invalid_client")
        clock.now += 95
        with pytest.raises(TokenError):
            await cache.get(A)
        assert first.token.access_token.fingerprint in caplog.text

    asyncio.run(scenario())
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "rule billing, invoices (first use)" in infos[0].getMessage()
    assert "(expired)" in infos[1].getMessage()
    assert "expires_in 100 s" in infos[0].getMessage()
    assert "invalid_client" in warnings[0].getMessage()
    assert "a-1" not in caplog.text
    assert "a-2" not in caplog.text
    assert "secret-a" not in caplog.text


async def settle() -> None:
    """Let background tasks that are ready run to completion."""
    for _ in range(5):
        await asyncio.sleep(0)


def test_refresh_ahead_serves_the_current_token_and_refreshes_in_the_background():
    cache, endpoint, clock = make(expires_in=100, refresh_ahead=0.8)

    async def scenario() -> list[str]:
        got = [value(await cache.get(A))]
        clock.now += 79.9
        got.append(value(await cache.get(A)))
        assert len(endpoint.calls) == 1
        clock.now += 0.1
        endpoint.gate = asyncio.Event()
        got += [value(await cache.get(A)) for _ in range(50)]  # none of them waits
        await settle()
        assert len(endpoint.calls) == 2
        endpoint.gate.set()
        await settle()
        got.append(value(await cache.get(A)))
        return got

    got = asyncio.run(scenario())
    assert got == ["a-1"] * 52 + ["a-2"]
    assert len(endpoint.calls) == 2


def test_failed_refresh_keeps_serving_the_usable_token_then_fails_closed():
    cache, endpoint, clock = make(expires_in=100, refresh_ahead=0.5)

    async def scenario() -> None:
        await cache.get(A)
        endpoint.error = TokenError("idp down", status=503)
        clock.now += 50
        assert value(await cache.get(A)) == "a-1"  # starts the refresh
        await settle()
        assert len(endpoint.calls) == 2
        clock.now += 30
        assert value(await cache.get(A)) == "a-1"  # refresh failed: still the usable token
        await settle()
        clock.now += 10  # now at 90 s: expired (100 s - 10 s early)
        with pytest.raises(TokenError, match="idp down"):
            await cache.get(A)

    asyncio.run(scenario())


def test_background_refreshes_back_off_too():
    cache, endpoint, clock = make(expires_in=1000, refresh_ahead=0.5)
    endpoint.error = None

    async def scenario() -> None:
        await cache.get(A)
        endpoint.error = TokenError("idp down", status=500)
        clock.now += 500
        for _ in range(100):  # traffic during the back-off does not reach the endpoint
            await cache.get(A)
            await settle()
            clock.now += 0.001
        assert len(endpoint.calls) == 2

    asyncio.run(scenario())


def test_retry_after_is_honoured():
    cache, endpoint, clock = make()
    endpoint.error = TokenError("slow down", status=429, retry_after=120)

    async def scenario() -> None:
        with pytest.raises(TokenError):
            await cache.get(A)
        clock.now += 119
        with pytest.raises(TokenError, match="next attempt in 1 s"):
            await cache.get(A)
        clock.now += 1
        endpoint.error = None
        await cache.get(A)

    asyncio.run(scenario())
    assert len(endpoint.calls) == 2


def test_unexpected_exceptions_become_token_errors_and_back_off():
    cache, endpoint, _ = make()
    endpoint.error = ZeroDivisionError("bug")  # type: ignore[assignment]

    async def scenario() -> None:
        with pytest.raises(TokenError, match=r"internal error .*ZeroDivisionError"):
            await cache.get(A)
        with pytest.raises(TokenError, match="next attempt"):
            await cache.get(A)

    asyncio.run(scenario())
    assert len(endpoint.calls) == 1


def test_a_fetch_after_a_purge_says_so(caplog):
    cache, _endpoint, _clock = make()
    events: list[dict[str, object]] = []
    cache.on_event = events.append

    async def scenario() -> None:
        old = await cache.get(A)
        cache.purge(A, old.token, "upstream answered 401")
        await cache.get(A)

    with caplog.at_level(logging.INFO):
        asyncio.run(scenario())
    fetches = [e["reason"] for e in events if e["event"] == "fetch"]
    assert fetches == ["first use", "after purge"]
    assert "(after purge)" in caplog.text


def test_purge_drops_only_the_cached_token_and_is_rate_limited():
    cache, _endpoint, clock = make()

    async def scenario() -> None:
        old = await cache.get(A)
        assert cache.purge(A, old.token, "upstream answered 401")
        new = await cache.get(A)
        assert value(new) == "a-2"
        assert not cache.purge(A, old.token, "late 401 for the old token")
        assert not cache.purge(A, new.token, "too soon")
        clock.now += 10
        assert cache.purge(A, new.token, "upstream answered 401")
        assert value(await cache.get(A)) == "a-3"

    asyncio.run(scenario())


def test_a_token_that_arrives_past_its_usable_time_goes_to_its_waiters_only(caplog):
    cache, endpoint, clock = make(expires_in=1)
    endpoint.gate = asyncio.Event()

    async def scenario() -> tuple[list[Lease], Lease | None, int]:
        waiters = [asyncio.create_task(cache.get(A)) for _ in range(5)]
        for _ in range(5):  # until the fetch has been asked for
            await asyncio.sleep(0)
        assert len(endpoint.calls) == 1
        clock.now += 2  # the endpoint answers after 2 s: the token's 1 s has gone
        endpoint.gate.set()
        got = await asyncio.gather(*waiters)
        later = cache.cached(A)
        await cache.get(A)  # the next request waits for the next fetch
        return got, later, len(endpoint.calls)

    with caplog.at_level(logging.INFO):
        got, later, calls = asyncio.run(scenario())
    assert [value(t) for t in got] == ["a-1"] * 5
    assert {lease.usable_until for lease in got} == {None}  # shown as no usable time at all
    assert later is None
    assert calls == 2
    assert "already past its usable time: sent with the waiting requests only" in caplog.text
    assert caplog.text.count("took 2.0 s to issue a token that lives 1 s") == 1


def test_a_stored_tokens_lifetime_counts_from_its_first_fetch():
    """A token another process fetched 30 s ago lives 30 s less here, and is refreshed as soon
    as that process would refresh it: the fleet keeps one schedule."""

    async def from_store(creds: Credentials) -> Token:
        return Token(Secret("shared"), expires_in=100, age=30.0, source="store")

    clock = Clock()
    cache = TokenCache(from_store, clock=clock, refresh_ahead=0.8)
    cache.use({A: ("api",)})
    lease = asyncio.run(cache.get(A))
    assert lease.usable_until == pytest.approx(time.time() + 60, abs=1)  # 100 - 30 - 10
    (status,) = cache.status()
    assert (status.source, status.from_store, status.fetches) == ("store", 1, 0)
    assert status.usable_for == pytest.approx(60)
    clock.now += 49
    assert cache.cached(A) is lease
    assert cache.status()[0].state == "valid"
    clock.now += 1  # 80 s after the first fetch: refresh ahead starts

    async def due() -> str:
        assert cache.cached(A) is lease
        state = cache.status()[0].state
        await asyncio.sleep(0)  # the refresh (an instant one) ends before the loop does
        return state

    assert asyncio.run(due()) == "refreshing"
