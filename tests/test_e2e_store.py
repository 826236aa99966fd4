"""End to end: several real mitmdump processes share their tokens through a store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from tests.conftest import CLIENT_SECRET, StartProxy, async_client, client, rule, rules
from tests.support.proxy import Mitmdump
from tests.support.servers import Recorded, RecordingServer, Reply

LOG_TIME = re.compile(r"^\[(\d\d):(\d\d):(\d\d)\.(\d{3})\]")


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An `oauth_store` value: a SQLite file, or a fresh redis-server's URL."""
    if request.param == "sqlite":
        return f"sqlite:{tmp_path / 'oauth.db'}"
    return request.getfixturevalue("fresh_redis").url


def token_requests(idp: RecordingServer) -> int:
    return sum(1 for r in idp.requests if r.path == "/token")


async def burst(proxy: Mitmdump, url: str, count: int) -> list[httpx.Response]:
    async with async_client(proxy) as http:
        return await asyncio.gather(*(http.get(url) for _ in range(count)))


def fleet(
    start_proxy: StartProxy, rules_text: str, store: str, size: int, **options: str
) -> list[Mitmdump]:
    return [start_proxy(rules_text, options={"oauth_store": store, **options}) for _ in range(size)]


def test_four_instances_in_a_cold_burst_fetch_one_token(start_proxy, store, idp, api):
    """4 mitmdump processes x 25 concurrent first requests: one token request in all."""
    proxies = fleet(start_proxy, rules(rule("api", api, idp)), store, 4)

    async def everyone() -> list[httpx.Response]:
        bursts = [burst(p, f"{api.origin}/v1", 25) for p in proxies]
        return [r for answers in await asyncio.gather(*bursts) for r in answers]

    answers = asyncio.run(everyone())
    assert [r.status_code for r in answers] == [200] * 100
    assert token_requests(idp) == 1
    assert {r.header("Authorization") for r in api.requests} == {"Bearer sentinel-token-1"}
    assert sum("taken from the store" in p.output for p in proxies) == 3


def test_a_restarted_instance_takes_the_stored_token(start_proxy, tmp_path, idp, api):
    store = f"sqlite:{tmp_path / 'oauth.db'}"
    first = start_proxy(rules(rule("api", api, idp)), options={"oauth_store": store})
    with client(first) as http:
        assert http.get(f"{api.origin}/v1").status_code == 200
    first.stop()
    second = start_proxy(rules(rule("api", api, idp)), options={"oauth_store": store})
    with client(second) as http:
        assert http.get(f"{api.origin}/v1").status_code == 200
    assert token_requests(idp) == 1
    assert [r.header("Authorization") for r in api.requests] == ["Bearer sentinel-token-1"] * 2
    assert second.printed("taken from the store")


class Rejecting:
    """An API that answers 401 to the tokens in `rejected` and 200 to any other."""

    def __init__(self) -> None:
        self.rejected: set[str] = set()

    def __call__(self, request: Recorded) -> Reply:
        if request.header("Authorization") in {f"Bearer {t}" for t in self.rejected}:
            return Reply(401, {"error": "invalid_token"})
        return Reply(200, {"ok": True})


def logged_at(proxy: Mitmdump, text: str) -> float:
    """When mitmdump logged the first line holding `text` (seconds since midnight)."""
    assert proxy.printed(text), proxy.output
    line = next(line for line in proxy.output.splitlines() if text in line)
    match = LOG_TIME.match(line)
    assert match, line
    hours, minutes, seconds, millis = (int(g) for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def test_a_purge_in_one_instance_reaches_the_others_within_a_second(start_proxy, store, idp):
    api_behaviour = Rejecting()
    with RecordingServer(api_behaviour) as api:
        one, two = fleet(start_proxy, rules(rule("api", api, idp)), store, 2)
        for proxy in (one, two):  # both hold token-1: one fetched it, two took it
            with client(proxy) as http:
                assert http.get(f"{api.origin}/v1").status_code == 200
        api_behaviour.rejected.add("sentinel-token-1")
        with client(one) as http:
            assert http.get(f"{api.origin}/v1").status_code == 401
        purged = logged_at(one, "dropped: upstream answered 401")
        dropped = logged_at(two, "dropped: rejected upstream, as another process said")
        assert 0 <= dropped - purged <= 1.0
        with client(two) as http:
            assert http.get(f"{api.origin}/v1").status_code == 200
    assert token_requests(idp) == 2
    assert api.requests[-1].header("Authorization") == "Bearer sentinel-token-2"


def test_a_lock_holder_killed_mid_fetch_holds_nobody_up(start_proxy, tmp_path, idp, issuer, api):
    """The first fetch hangs and its process is killed: another takes the lock over once it
    runs out (3 s) and gets a token, well within the token timeout (10 s)."""
    first_answered = []

    def slow_first(request: Recorded) -> Reply:
        reply = issuer.issue(request)
        if not first_answered:
            first_answered.append(True)
            return Reply(reply.status, reply.body, delay=30)
        return reply

    issuer.reply = slow_first
    store = f"sqlite:{tmp_path / 'oauth.db'}"
    holder, waiter = fleet(start_proxy, rules(rule("api", api, idp)), store, 2)

    async def scenario() -> httpx.Response:
        async with async_client(holder) as http:
            hanging = asyncio.create_task(http.get(f"{api.origin}/v1"))
            await asyncio.to_thread(idp.wait_for_requests, 1)
            waiting = asyncio.create_task(burst(waiter, f"{api.origin}/v1", 1))
            await asyncio.sleep(0.2)  # the waiter finds the lock taken
            assert holder.process is not None
            holder.process.send_signal(signal.SIGKILL)
            started = time.monotonic()
            (answer,) = await waiting
            hanging.cancel()
            assert time.monotonic() - started < 10
            return answer

    answer = asyncio.run(scenario())
    assert answer.status_code == 200
    assert answer.request.headers.get("Authorization") is None
    assert token_requests(idp) == 2
    assert api.requests[-1].header("Authorization") == "Bearer sentinel-token-2"


def test_the_store_file_holds_no_token_secret_or_client_id(start_proxy, tmp_path, idp, issuer):
    api_behaviour = Rejecting()
    with RecordingServer(api_behaviour) as api:
        store = f"sqlite:{tmp_path / 'oauth.db'}"
        one, two = fleet(start_proxy, rules(rule("api", api, idp)), store, 2)
        for proxy in (one, two, one, two):
            with client(proxy) as http:
                http.get(f"{api.origin}/v1")
            api_behaviour.rejected.add("sentinel-token-1")  # a purge, a mark, a new token
    stored = b"".join(p.read_bytes() for p in Path(tmp_path).glob("oauth.db*"))
    assert stored
    for clear in (*issuer.issued, CLIENT_SECRET, "client-api"):
        assert clear.encode() not in stored
    assert len(issuer.issued) >= 2


def test_the_redis_store_holds_no_token_secret_or_client_id(start_proxy, fresh_redis, idp, issuer):
    api_behaviour = Rejecting()
    with RecordingServer(api_behaviour) as api:
        one, two = fleet(start_proxy, rules(rule("api", api, idp)), fresh_redis.url, 2)
        for proxy in (one, two, one, two):
            with client(proxy) as http:
                http.get(f"{api.origin}/v1")
            api_behaviour.rejected.add("sentinel-token-1")
    with fresh_redis.client() as redis:
        names = list(redis.scan_iter("*"))
        stored = b"".join(names) + b"".join(redis.dump(name) or b"" for name in names)
    assert len(names) >= 2  # a token, the purge marks
    for clear in (*issuer.issued, CLIENT_SECRET, "client-api"):
        assert clear.encode() not in stored
    assert len(issuer.issued) >= 2


def test_redis_killed_mid_run_fails_no_request_and_sharing_resumes(
    start_proxy, fresh_redis, idp, issuer, api, tmp_path
):
    """Tokens of 3 s keep both instances at their store; redis-server dies and comes back."""
    issuer.expires_in = 3
    events = tmp_path / "events.jsonl"  # both append to it, a line at a time
    one, two = fleet(
        start_proxy,
        rules(rule("api", api, idp)),
        fresh_redis.url,
        2,
        oauth_log_json=str(events),
    )

    def traffic(seconds: float) -> list[int]:
        statuses = []
        until = time.monotonic() + seconds
        with client(one) as first, client(two) as second:
            while time.monotonic() < until:
                statuses += [first.get(f"{api.origin}/v1").status_code]
                statuses += [second.get(f"{api.origin}/v1").status_code]
        return statuses

    assert set(traffic(2)) == {200}
    fresh_redis.kill()
    assert set(traffic(4)) == {200}  # each instance fetches its own tokens meanwhile
    for proxy in (one, two):
        assert proxy.printed("going on without it")
    fresh_redis.start()
    for proxy in (one, two):
        assert proxy.printed("answers again: tokens are shared", timeout=15)
    taken = sum(p.output.count("taken from the store") for p in (one, two))
    fetched = token_requests(idp)
    assert set(traffic(4)) == {200}
    assert sum(p.output.count("taken from the store") for p in (one, two)) > taken
    assert token_requests(idp) - fetched <= 4  # about one per 1.5 s usable period, not two
    said = [json.loads(line) for line in events.read_text().splitlines()]
    store_events = [e["event"] for e in said if e["event"].startswith("store_")]
    assert sorted(store_events) == ["store_down", "store_down", "store_up", "store_up"]
    assert all(e["store"] == fresh_redis.url for e in said if e["event"].startswith("store_"))


def test_instances_with_different_store_keys_each_work(start_proxy, fresh_redis, idp, api):
    """Neither can open the other's tokens: each fetches its own, nothing fails."""
    keys = [Fernet.generate_key().decode() for _ in range(2)]
    proxies = [
        start_proxy(
            rules(rule("api", api, idp)),
            options={"oauth_store": fresh_redis.url},
            env={"OAUTH_STORE_KEY": key},
        )
        for key in keys
    ]
    for proxy in proxies:
        with client(proxy) as http:
            assert http.get(f"{api.origin}/v1").status_code == 200
    assert token_requests(idp) == 2
    for key, proxy in zip(keys, proxies, strict=True):
        assert key not in proxy.output


def test_prefetch_gets_the_tokens_before_any_request(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp)), options={"oauth_prefetch": "true"})
    assert proxy.printed("token fetched for rule api (first use)")
    assert token_requests(idp) == 1
    with client(proxy) as http:
        assert http.get(f"{api.origin}/v1").status_code == 200
    assert token_requests(idp) == 1
    assert api.requests[0].header("Authorization") == "Bearer sentinel-token-1"


def test_a_fleet_under_sustained_traffic_fetches_once_per_refresh_period(
    start_proxy, fresh_redis, idp, issuer, api
):
    """Tokens of 4 s are used for 2 s (oauth_expiry_delta caps at half the lifetime): over
    three such periods, three instances fetch about once per period between them, not three
    times each."""
    issuer.expires_in = 4
    proxies = fleet(start_proxy, rules(rule("api", api, idp)), fresh_redis.url, 3)
    statuses = []
    with contextlib.ExitStack() as stack:
        clients = [stack.enter_context(client(p)) for p in proxies]
        until = time.monotonic() + 6
        while time.monotonic() < until:
            statuses += [c.get(f"{api.origin}/v1").status_code for c in clients]
    assert set(statuses) == {200}
    assert 3 <= token_requests(idp) <= 5  # unshared: 3 instances x 3 periods = 9 or more
    assert sum("taken from the store" in p.output for p in proxies) >= 2
