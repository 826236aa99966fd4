"""The shared token store's parts, in-process: the option, keys, sealing, SQLite, sharing."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mitm_oauth.model import Credentials, DPoPSettings
from mitm_oauth.oauth.cache import TokenCache
from mitm_oauth.oauth.response import Token
from mitm_oauth.secret import Secret, SecretFile
from mitm_oauth.store.base import Stored, StoreError, TokenStore
from mitm_oauth.store.keys import KEY_PREFIX, credential_material, store_key
from mitm_oauth.store.redis import RedisStore
from mitm_oauth.store.sealing import Sealer, configured_keys
from mitm_oauth.store.shared import SharedFetch
from mitm_oauth.store.spec import parse_store
from mitm_oauth.store.sqlite import SQLiteStore

CREDS = Credentials(
    "https://idp.example/token", Secret("client-7"), Secret("s3cret-7"), scopes=("read",)
)


# -- oauth_store -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "display"),
    [
        ("memory", "memory", "memory"),
        ("", "memory", "memory"),
        ("sqlite:/var/lib/oauth.db", "sqlite", "sqlite:/var/lib/oauth.db"),
        ("redis://cache:6379/2", "redis", "redis://cache:6379/2"),
        ("rediss://app:${PW}@cache:6380", "redis", "rediss://app:***@cache:6380"),
        ("unix:///run/redis.sock", "redis", "unix:///run/redis.sock"),
        ("redis://cache:6379/0?password=${PW}", "redis", "redis://cache:6379/0?password=***"),
        ("unix:///run/r.sock?password=${PW}&db=1", "redis", "unix:///run/r.sock?password=***&db=1"),
    ],
)
def test_the_store_option_takes_each_form_and_never_shows_a_password(value, kind, display):
    spec = parse_store(value, {"PW": "hunter2"})
    assert (spec.kind, spec.display) == (kind, display)
    assert "hunter2" not in repr(spec) + spec.display


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mongodb://x", "oauth_store must be memory, sqlite:PATH, redis://"),
        ("sqlite:", "oauth_store: sqlite: needs a file"),
        ("redis://:pw@cache:port", "oauth_store: 'redis://:***@cache:port' has a port that is"),
        ("redis://cache/db1", "the database is a number"),
        ("redis://${NOPE}@cache", "oauth_store: environment variable NOPE is not set"),
        ("unix://", "needs the socket's path"),
    ],
)
def test_a_wrong_store_option_says_what_is_wrong(value, message):
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        parse_store(value, {})
    assert "pw@" not in str(raised.value)


def test_a_redis_password_may_come_from_its_variable():
    spec = parse_store("redis://cache:6379", {"OAUTH_STORE_PASSWORD": "hunter2"})
    assert spec.password == "hunter2"
    assert "hunter2" not in repr(spec)


# -- keys and sealing ------------------------------------------------------------------------


def test_the_store_key_changes_with_anything_that_decides_the_token(tmp_path):
    key = store_key(credential_material(CREDS))
    assert key.startswith("mitm-oauth:v1:")
    for other in (
        Credentials(CREDS.token_url, Secret("client-7"), Secret("rotated"), scopes=("read",)),
        Credentials(CREDS.token_url, Secret("client-7"), Secret("s3cret-7"), scopes=("write",)),
        Credentials(
            CREDS.token_url,
            Secret("client-7"),
            Secret("s3cret-7"),
            scopes=("read",),
            endpoint_params=(("audience", ("a",)),),
        ),
    ):
        assert store_key(credential_material(other)) != key
    assert store_key(credential_material(CREDS)) == key
    assert "client-7" not in key
    assert "s3cret-7" not in key


def test_a_secret_file_counts_with_its_content(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("one\n")
    creds = Credentials(CREDS.token_url, Secret("c"), SecretFile(str(secret)))
    before = store_key(credential_material(creds))
    secret.write_text("two\n")
    assert store_key(credential_material(creds)) != before


def test_sealed_values_open_only_with_their_key_and_keys_rotate():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    material = credential_material(CREDS)
    sealed_old = Sealer(configured_keys({"OAUTH_STORE_KEY": old})).seal(material, b"tok")
    rotated = Sealer(configured_keys({"OAUTH_STORE_KEY": f"{new},{old}"}))
    opened = rotated.open(material, sealed_old)
    assert opened is not None
    assert opened[0] == b"tok"
    assert Sealer(configured_keys({"OAUTH_STORE_KEY": new})).open(material, sealed_old) is None
    assert b"tok" not in sealed_old
    derived = Sealer().seal(material, b"tok")
    assert (Sealer().open(material, derived) or (b"",))[0] == b"tok"
    other = credential_material(Credentials(CREDS.token_url, Secret("c"), Secret("x")))
    assert Sealer().open(other, derived) is None  # only holders of the secret open it


def test_a_malformed_store_key_is_one_line_naming_which():
    good = Fernet.generate_key().decode()
    with pytest.raises(ValueError, match=r"OAUTH_STORE_KEY: key 2 of 2 is not a Fernet key"):
        configured_keys({"OAUTH_STORE_KEY": f"{good},not-a-key"})
    assert configured_keys({}) is None


K, GONE = f"{KEY_PREFIX}k", f"{KEY_PREFIX}gone"

# -- both stores -----------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("redis", marks=pytest.mark.slow)])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], TokenStore]:
    """Makes a store: each call is another process's view of the same one."""
    if request.param == "sqlite":
        return lambda: SQLiteStore(str(tmp_path / "oauth.db"))
    server = request.getfixturevalue("fresh_redis")
    return lambda: RedisStore(parse_store(server.url))


def test_a_store_keeps_values_for_their_time_and_compares_before_deleting(open_store):
    async def scenario() -> None:
        store = open_store()
        try:
            await store.put(K, b"v1", 60)
            stored = await store.get(K)
            assert stored is not None
            assert stored.value == b"v1"
            assert 59 < stored.remaining <= 60
            assert await store.count() == 1
            await store.put(GONE, b"x", 0.001)
            await asyncio.sleep(0.01)
            assert await store.get(GONE) is None
            assert not await store.delete_if(K, b"other")
            assert await store.delete_if(K, b"v1")
            assert await store.get(K) is None
        finally:
            await store.close()

    asyncio.run(scenario())


def test_the_sqlite_file_is_for_its_owner_only(tmp_path):
    async def scenario() -> None:
        store = SQLiteStore(str(tmp_path / "oauth.db"))
        await store.put("k", b"v", 60)
        await store.close()

    asyncio.run(scenario())
    assert stat.S_IMODE((tmp_path / "oauth.db").stat().st_mode) == 0o600


def test_a_lock_has_one_holder_until_released_or_run_out(open_store):
    async def scenario() -> None:
        a, b = open_store(), open_store()
        try:
            assert await a.acquire("lock", "a", 60)
            assert not await b.acquire("lock", "b", 60)
            assert not await b.extend("lock", "b", 60)
            await b.release("lock", "b")  # not its lock: nothing happens
            assert not await b.acquire("lock", "b", 60)
            await a.release("lock", "a")
            assert await b.acquire("lock", "b", 0.05)
            assert not await a.acquire("lock", "a", 60)
            await asyncio.sleep(0.1)  # the lock's own time runs out: nothing to await
            assert await a.acquire("lock", "a", 60)
            assert not await b.extend("lock", "b", 60)
            assert await a.extend("lock", "a", 60)
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_purge_marks_last_their_time(open_store):
    async def scenario() -> set[tuple[str, str]]:
        store = open_store()
        try:
            await store.mark_purged("k", "abcd1234", 60)
            await store.mark_purged("old", "ffff0000", 0.001)
            await asyncio.sleep(0.01)
            return await store.purged()
        finally:
            await store.close()

    assert asyncio.run(scenario()) == {("k", "abcd1234")}


def test_the_sqlite_file_may_be_deleted_at_any_time(tmp_path):
    path = tmp_path / "oauth.db"

    async def scenario() -> None:
        store = SQLiteStore(str(path))
        try:
            await store.put("k", b"v", 60)
            for name in ("oauth.db", "oauth.db-wal", "oauth.db-shm"):
                (tmp_path / name).unlink(missing_ok=True)
            assert await store.get("k") is None  # a new, empty file
            await store.put("k", b"v2", 60)
            stored = await store.get("k")
            assert stored is not None
            assert stored.value == b"v2"
        finally:
            await store.close()

    asyncio.run(scenario())
    assert path.exists()


def test_a_sqlite_file_that_cannot_be_made_is_one_line(tmp_path):
    store = SQLiteStore(str(tmp_path / "missing-dir" / "oauth.db"))
    with pytest.raises(StoreError, match=r"sqlite:.*oauth.db: cannot open it: No such file"):
        store.check()


# -- sharing ---------------------------------------------------------------------------------


class Endpoint:
    """Counts fetches; each waits for `gate`, so that concurrent callers overlap."""

    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()
        self.gate = asyncio.Event()

    async def __call__(self, creds: Credentials) -> Token:
        self.calls += 1
        self.called.set()
        await self.gate.wait()
        return Token(Secret(f"tok-{self.calls}"), expires_in=3600)


def shared(store: TokenStore, endpoint: Endpoint) -> tuple[SharedFetch, TokenCache]:
    """A process's cache with the store between it and the endpoint."""
    holder: list[SharedFetch] = []

    async def fetch(creds: Credentials) -> Token:
        return await holder[0].fetch(creds)

    cache = TokenCache(fetch)
    holder.append(SharedFetch(store, endpoint, Sealer(), cache))
    cache.use({CREDS: ("api",)})
    return holder[0], cache


def test_several_processes_sharing_a_store_fetch_once(open_store):
    async def scenario() -> list[Token]:
        endpoint = Endpoint()
        stores = [open_store() for _ in range(4)]
        caches = [shared(store, endpoint)[1] for store in stores]
        try:
            waiting = [asyncio.create_task(c.get(CREDS)) for c in caches for _ in range(5)]
            await asyncio.wait_for(endpoint.called.wait(), 10)
            endpoint.gate.set()
            leases = await asyncio.gather(*waiting)
            return [lease.token for lease in leases]
        finally:
            for store in stores:
                await store.close()

    tokens = asyncio.run(scenario())
    assert {t.access_token.reveal() for t in tokens} == {"tok-1"}
    assert sum(t.source == "store" for t in tokens) == 15  # 3 processes x 5 requests


def test_a_stored_token_keeps_its_age_and_is_not_taken_past_its_refresh_point(tmp_path):
    async def scenario() -> tuple[Token, Token | None]:
        store = SQLiteStore(str(tmp_path / "oauth.db"))
        endpoint = Endpoint()
        endpoint.gate.set()
        sharer, _cache = shared(store, endpoint)
        try:
            await sharer.fetch(CREDS)
            stored = await store.get(store_key(credential_material(CREDS)))
            assert stored is not None
            # As if fetched 1,000 s ago (of 3,590 usable), then 3,000 s ago (past 80 %).
            await store.put(stored_key(), stored.value, 3590 - 1000)
            young = await sharer.fetch(CREDS)
            await store.put(stored_key(), stored.value, 3590 - 3000)
            calls = endpoint.calls
            old = await sharer.fetch(CREDS)
            return young, old if endpoint.calls == calls else None
        finally:
            await store.close()

    young, old = asyncio.run(scenario())
    assert young.source == "store"
    assert young.age == pytest.approx(1000, abs=2)
    assert old is None  # past its refresh point: fetched anew, not taken


def stored_key() -> str:
    return store_key(credential_material(CREDS))


class BrokenStore:
    description = "redis://cache:6379"

    def __init__(self) -> None:
        self.calls = 0

    async def get(self, key: str) -> Stored | None:
        self.calls += 1
        raise StoreError("redis://cache:6379: connection refused")

    purged = get  # type: ignore[assignment]


def test_a_failing_store_is_said_once_and_every_fetch_goes_on_without_it(caplog):
    async def scenario(store: BrokenStore) -> list[Token]:
        endpoint = Endpoint()
        endpoint.gate.set()
        events: list[dict[str, object]] = []
        sharer = SharedFetch(
            store, endpoint, Sealer(), TokenCache(endpoint), on_event=events.append
        )  # type: ignore[arg-type]
        tokens = [await sharer.fetch(CREDS) for _ in range(3)]
        assert events == [
            {
                "event": "store_down",
                "store": "redis://cache:6379",
                "reason": "redis://cache:6379: connection refused",
            }
        ]
        return tokens

    store = BrokenStore()
    with caplog.at_level(logging.WARNING):
        tokens = asyncio.run(scenario(store))
    assert [t.source for t in tokens] == ["endpoint"] * 3
    assert store.calls == 1  # tried again only after RETRY seconds
    assert caplog.text.count("going on without it") == 1


def test_a_purge_takes_the_token_out_and_marks_it_for_every_process(open_store):
    async def scenario() -> list[tuple[Credentials, str]]:
        endpoint = Endpoint()
        endpoint.gate.set()
        one, _ = shared(open_store(), endpoint)
        two, _ = shared(open_store(), endpoint)
        try:
            token = await one.fetch(CREDS)
            assert (await two.fetch(CREDS)).source == "store"
            await one.purge(CREDS, token)
            assert await one.store.get(stored_key()) is None
            return await two.rejected_elsewhere()
        finally:
            await one.store.close()
            await two.store.close()

    marks = asyncio.run(scenario())
    assert marks == [(CREDS, Secret("tok-1").fingerprint)]


def test_nothing_stored_shows_a_token_a_secret_or_a_client_id(tmp_path):
    async def scenario() -> None:
        store = SQLiteStore(str(tmp_path / "oauth.db"))
        endpoint = Endpoint()
        endpoint.gate.set()
        sharer, _ = shared(store, endpoint)
        try:
            token = await sharer.fetch(CREDS)
            await sharer.purge(CREDS, token)
            await sharer.fetch(CREDS)
        finally:
            await store.close()

    asyncio.run(scenario())
    stored = b"".join(p.read_bytes() for p in Path(tmp_path).iterdir())
    for clear in (b"tok-1", b"tok-2", b"s3cret-7", b"client-7"):
        assert clear not in stored


def test_each_purge_mark_is_acted_on_once(open_store):
    """An endpoint that issues the same token again must not have it dropped every look."""

    async def scenario() -> list[list[tuple[Credentials, str]]]:
        endpoint = Endpoint()
        endpoint.gate.set()
        one, _ = shared(open_store(), endpoint)
        two, _ = shared(open_store(), endpoint)
        try:
            token = await one.fetch(CREDS)
            await two.fetch(CREDS)
            await one.purge(CREDS, token)
            return [await two.rejected_elsewhere() for _ in range(2)]
        finally:
            await one.store.close()
            await two.store.close()

    first, second = asyncio.run(scenario())
    assert first == [(CREDS, Secret("tok-1").fingerprint)]
    assert second == []


def test_dpop_tokens_are_shared_only_by_holders_of_the_same_key_file(tmp_path):
    key = tmp_path / "dpop.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\none\n-----END PRIVATE KEY-----\n")
    with_file = dataclasses.replace(CREDS, dpop=DPoPSettings(key_file=str(key)))
    before = store_key(credential_material(with_file))
    assert before != store_key(credential_material(CREDS))
    key.write_text("-----BEGIN PRIVATE KEY-----\ntwo\n-----END PRIVATE KEY-----\n")
    assert store_key(credential_material(with_file)) != before
    in_memory = dataclasses.replace(CREDS, dpop=DPoPSettings())
    with pytest.raises(ValueError, match="made in memory is not shared"):
        credential_material(in_memory)


def test_a_sealed_token_copied_under_another_key_or_put_back_late_is_a_miss(tmp_path):
    """Whoever can write to the store, without the keys, cannot give one credential set
    another's token, nor bring an old token back with a fresh time to live."""
    keys = configured_keys({"OAUTH_STORE_KEY": Fernet.generate_key().decode()})
    admin = dataclasses.replace(CREDS, scopes=("admin",))

    async def scenario() -> list[str]:
        store = SQLiteStore(str(tmp_path / "oauth.db"))
        endpoint = Endpoint()
        endpoint.gate.set()
        cache = TokenCache(endpoint)
        sharer = SharedFetch(store, endpoint, Sealer(keys), cache)
        try:
            await sharer.fetch(admin)  # tok-1, stored under admin's key
            admin_key = store_key(credential_material(admin))
            stored = await store.get(admin_key)
            assert stored is not None
            await store.put(stored_key(), stored.value, 3000)  # copied under CREDS's key
            swapped = await sharer.fetch(CREDS)
            record = json.dumps(
                {
                    "key": stored_key(),
                    "access_token": "old",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": None,
                }
            ).encode()
            assert keys is not None
            late = keys.encrypt_at_time(record, int(time.time()) - 4000)  # sealed 4,000 s ago
            await store.put(stored_key(), late, 3000)
            revived = await sharer.fetch(CREDS)
            return [swapped.access_token.reveal(), revived.access_token.reveal()]
        finally:
            await store.close()

    assert asyncio.run(scenario()) == ["tok-2", "tok-3"]  # each fetched, not taken


def test_a_sqlite_file_made_by_someone_else_is_made_private_and_odd_rows_are_misses(tmp_path):
    path = tmp_path / "oauth.db"
    path.touch(mode=0o666)
    path.chmod(0o666)

    async def scenario() -> Stored | None:
        store = SQLiteStore(str(path))
        try:
            await store.put(K, b"v", 60)
            store._db.execute("UPDATE tokens SET value = 7")  # type: ignore[union-attr]
            return await store.get(K)
        finally:
            await store.close()

    assert asyncio.run(scenario()) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    link = tmp_path / "link.db"
    link.symlink_to(path)
    with pytest.raises(StoreError, match="cannot open it"):
        SQLiteStore(str(link)).check()


def test_a_purge_mark_that_is_not_ours_is_ignored(fresh_redis):
    with fresh_redis.client() as redis:
        redis.zadd("mitm-oauth:v1:purges", {"garbage-without-a-space": 9e15, "k fp": 9e15})

    async def scenario() -> set[tuple[str, str]]:
        store = RedisStore(parse_store(fresh_redis.url))
        try:
            return await store.purged()
        finally:
            await store.close()

    assert asyncio.run(scenario()) == {("k", "fp")}


def test_connections_from_before_a_redis_restart_are_not_a_store_failure(fresh_redis):
    """redis-server restarted: each pooled connection fails once; the call goes on anew."""

    async def scenario() -> list[object]:
        store = RedisStore(parse_store(fresh_redis.url))
        try:
            await asyncio.gather(*(store.get(K) for _ in range(5)))  # five pooled connections
            fresh_redis.kill()
            fresh_redis.start()
            calls = (store.get(K) for _ in range(5))
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await store.close()

    assert asyncio.run(scenario()) == [None] * 5
