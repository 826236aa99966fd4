"""The mitmproxy glue, in-process through mitmproxy's own test helpers."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tutils

from mitm_oauth.errors import TokenError
from mitm_oauth.mitm.addon import ClientCredentials
from mitm_oauth.mitm.refusals import CARRIER
from mitm_oauth.model import Credentials
from mitm_oauth.oauth.response import Token
from mitm_oauth.secret import Secret
from tests.support.inprocess import RULES, flow, run


def token_fetcher(calls: list[Credentials], error: Exception | None = None):
    async def fetch(creds: Credentials) -> Token:
        calls.append(creds)
        if error is not None:
            raise error
        return Token(Secret("tok"), "Bearer", 3600)

    return fetch


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def test_injects_into_matching_flows_only(rules_file):
    calls: list[Credentials] = []
    addon = ClientCredentials(fetch=token_fetcher(calls))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        matching, other = flow(), flow("https://api.example.com/v2")
        run(addon, matching)
        run(addon, other)
    assert matching.request.headers["Authorization"] == "Bearer tok"
    assert matching.request.headers["Accept"] == "application/json"
    assert other.request.headers["Authorization"] == "Basic client-own"
    assert len(calls) == 1
    metadata = matching.metadata["oauth"]
    assert metadata["action"] == "injected"
    assert metadata["rule"] == "api"
    assert metadata["token"] == Secret("tok").fingerprint
    assert 3500 < metadata["usable_until"] - time.time() <= 3591
    assert json.loads(json.dumps(matching.get_state()["metadata"]))["oauth"] == metadata
    assert other.metadata == {}


def test_host_header_does_not_steer_the_token(rules_file):
    addon = ClientCredentials(fetch=token_fetcher([]))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        f = flow("https://evil.example.net/v1/x")
        f.request.headers["Host"] = "api.example.com"
        run(addon, f)
    assert f.request.headers["Authorization"] == "Basic client-own"


def test_token_error_answers_502(rules_file):
    addon = ClientCredentials(
        fetch=token_fetcher([], TokenError("nope", status=400, error="invalid_scope"))
    )
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        f = flow()
        run(addon, f)
    assert f.response.status_code == 502
    body = json.loads(f.response.content)
    assert body == {
        "error": "token_unavailable",
        "rule": "api",
        "message": "nope",
        "token_endpoint_status": 400,
        "token_endpoint_error": "invalid_scope",
    }


def test_a_refused_streamed_request_goes_to_the_refusal_endpoint_or_nowhere(rules_file):
    """mitmproxy cannot answer a request whose body it streams: the endpoint answers it."""
    addon = ClientCredentials(fetch=token_fetcher([], TokenError("nope", status=400)))
    refusals = addon.refusals
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        killed = flow()
        killed.request.stream = True
        run(addon, killed)  # the endpoint is not running: nothing may go anywhere
        diverted = flow()
        diverted.request.stream = True

        async def refuse_with_the_endpoint_running() -> None:
            await refusals.listen()
            await addon.requestheaders(diverted) or None
            refusals.done()

        asyncio.run(refuse_with_the_endpoint_running())
    assert killed.error is not None
    assert killed.response is None
    assert diverted.response is None
    assert (diverted.request.host, diverted.server_conn.address) == (
        "127.0.0.1",
        ("127.0.0.1", diverted.request.port),
    )
    _key, status, carried = diverted.request.headers[CARRIER].split(" ")
    assert status == "502"
    assert json.loads(base64.urlsafe_b64decode(carried))["message"].startswith("nope")
    refusals.restore(diverted)
    assert diverted.request.url == "https://api.example.com/v1/x"
    assert CARRIER not in diverted.request.headers


def test_unexpected_exception_fails_closed(rules_file, caplog):
    addon = ClientCredentials(fetch=token_fetcher([], RuntimeError("bug")))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        f = flow()
        run(addon, f)
    assert f.response.status_code == 502
    assert "internal error while fetching the token" in json.loads(f.response.content)["message"]
    assert "unexpected error" in caplog.text


def test_flows_already_answered_are_left_alone(rules_file):
    addon = ClientCredentials()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        f = flow()
        f.response = tutils.tresp()
        run(addon, f)
    assert f.request.headers["Authorization"] == "Basic client-own"


def test_bad_rules_at_start_up_log_an_error_and_refuse_traffic(tmp_path, caplog):
    addon = ClientCredentials()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(tmp_path / "missing.yaml"))
        f = flow()
        run(addon, f)
    assert "missing.yaml: file not found" in caplog.text
    assert f.response.status_code == 502


def test_bad_rules_while_running_are_refused_and_old_rules_stay(rules_file, tmp_path):
    addon = ClientCredentials(fetch=token_fetcher([]))
    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [1]\n")
    f = flow()

    async def scenario() -> None:
        with taddons.context(addon) as tctx:
            tctx.configure(addon, oauth_rules=str(rules_file))
            addon.running()
            with pytest.raises(exceptions.OptionsError, match=r"broken\.yaml: rule #1"):
                tctx.configure(addon, oauth_rules=str(broken))
            pending = addon.requestheaders(f)
            if pending is not None:
                await pending
            assert f.request.headers["Authorization"] == "Bearer tok"
            addon.done()
            await addon._closing

    asyncio.run(scenario())
    assert f.request.headers["Authorization"].startswith("Bearer [redacted sha256:")  # at exit


def test_options_reach_the_cache_and_client(rules_file):
    addon = ClientCredentials()
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon,
            oauth_rules=str(rules_file),
            oauth_expiry_delta=30,
            oauth_default_lifetime=600,
            oauth_token_timeout=3,
        )
        assert addon.cache.expiry_delta == 30
        assert addon.cache.default_lifetime == 600
        assert addon.client.timeout == 3
        addon.started = True  # from now on a change is a live one: refused, the old value kept
        with pytest.raises(exceptions.OptionsError, match="oauth_expiry_delta must be at least 0"):
            tctx.configure(addon, oauth_expiry_delta=-1)
        with pytest.raises(exceptions.OptionsError, match="oauth_token_timeout must be at least 1"):
            tctx.configure(addon, oauth_token_timeout=0)


def test_an_option_out_of_range_at_start_up_is_one_error_line(rules_file, caplog):
    """Raised while mitmproxy loads the script, it would print a traceback."""
    addon = ClientCredentials()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file), oauth_refresh_ahead=150)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors == ["oauth_refresh_ahead is a percentage: at most 100"]


@pytest.mark.parametrize(
    ("authority", "injected"), [("api.example.com", True), ("evil.example.net", False)]
)
def test_http2_authority_must_name_the_destination(rules_file, authority, injected):
    addon = ClientCredentials(fetch=token_fetcher([]))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        f = flow()
        f.request.http_version = "HTTP/2.0"
        f.request.authority = authority
        run(addon, f)
    assert (f.request.headers["Authorization"] == "Bearer tok") is injected


def test_console_commands_through_the_command_manager(rules_file):
    addon = ClientCredentials()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        commands = tctx.master.commands
        explained = commands.execute('oauth.explain "https://api.example.com/v1/x" POST')
        assert explained.startswith("POST https://api.example.com/v1/x → rule api")
        not_covered = commands.execute("oauth.explain https://api.example.com/v2")
        assert "api  path /v2 is not under /v1" in not_covered
        status = commands.execute("oauth.status").splitlines()
        assert status[0] == "store: memory (this process only)"
        assert status[2].startswith("api ")
        assert " missing " in commands.execute("oauth.status")
        assert commands.execute("oauth.flush") == "dropped 0 token(s)"
        with pytest.raises(exceptions.CommandError, match="no rule named 'nope'"):
            commands.execute("oauth.refresh nope")


def test_a_cached_non_bearer_token_is_refused_clearly_every_time(rules_file):
    async def fetch(creds: Credentials) -> Token:
        return Token(Secret("tok"), "MAC", 3600)

    addon = ClientCredentials(fetch=fetch)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        first, second = flow(), flow()
        run(addon, first)  # fetched
        run(addon, second)  # from the cache
    for f in (first, second):
        assert f.response.status_code == 502
        assert "'MAC' token, not a Bearer token" in json.loads(f.response.content)["message"]
    assert addon.refuser.refused["api"] == 2


def test_a_custom_header_is_set_kept_and_redacted(tmp_path: Path):
    path = tmp_path / "rules.yaml"
    extra = (
        "header_name: X-Api-Token",
        "header_value: 'Token {access_token}'",
        "client_authorization: keep",
    )
    path.write_text(RULES + "".join(f"    {line}\n" for line in extra))
    addon = ClientCredentials(fetch=token_fetcher([]))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(path))
        plain, own = flow(), flow()
        own.request.headers["X-Api-Token"] = "the client's"
        run(addon, plain)
        run(addon, own)
        assert plain.request.headers["X-Api-Token"] == "Token tok"
        assert plain.request.headers["Authorization"] == "Basic client-own"  # not ours to touch
        assert own.request.headers["X-Api-Token"] == "the client's"
        assert own.metadata["oauth"]["action"] == "kept"
        plain.response = tutils.tresp()
        addon.response(plain)
    fingerprint = Secret("tok").fingerprint
    assert plain.request.headers["X-Api-Token"] == f"Token [redacted sha256:{fingerprint}]"


def test_a_reload_applies_the_new_rule_with_the_token_it_kept(rules_file):
    """The header is built once per (rule, token): a new rule of the same name and
    credentials must not get the old rule's header, even from a fetch that ends after the swap.
    """
    released = asyncio.Event()

    async def slow_fetch(creds: Credentials) -> Token:
        await released.wait()
        return Token(Secret("tok"), "Bearer", 3600)

    addon = ClientCredentials(fetch=slow_fetch)

    async def scenario() -> tuple:
        with taddons.context(addon) as tctx:
            tctx.configure(addon, oauth_rules=str(rules_file))
            before = flow()
            pending = addon.requestheaders(before)
            assert pending is not None
            waiting = asyncio.ensure_future(pending)
            rules_file.write_text(RULES + "    accept: application/xml\n")
            addon.watcher.load()
            released.set()
            await waiting
            after = flow()
            assert addon.requestheaders(after) is None  # the kept token, from the cache
            return before, after

    before, after = asyncio.run(scenario())
    assert before.request.headers["Accept"] == "application/json"  # the rule it matched
    assert after.request.headers["Accept"] == "application/xml"
    assert after.request.headers["Authorization"] == "Bearer tok"
