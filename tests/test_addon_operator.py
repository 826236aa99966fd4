"""What operators see, in-process: the JSON event log, oauth.status, exchange flows, reloads."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy import flow as mflow
from mitmproxy.test import taddons, tutils

from mitm_oauth.errors import TokenError
from mitm_oauth.mitm.addon import ClientCredentials
from mitm_oauth.mitm.exchange_view import exchange_flow
from mitm_oauth.observe.exchange import Exchange
from mitm_oauth.secret import Secret
from tests.support.inprocess import RULES, Endpoint, flow, run


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return path


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_json_event_log_has_reload_fetch_and_purge_with_fingerprints_only(rules_file, tmp_path):
    log_file = tmp_path / "events.jsonl"
    addon = ClientCredentials(fetch=Endpoint())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_log_json=str(log_file), oauth_rules=str(rules_file))
        f = flow()
        run(addon, f)
        f.response = tutils.tresp(status_code=401)
        addon.response(f)
    reload, fetch, purge = events(log_file)
    assert (reload["event"], reload["rules"]) == ("reload", ["api"])
    assert (fetch["event"], fetch["reason"], fetch["rules"]) == ("fetch", "first use", ["api"])
    assert fetch["token"] == purge["token"] == Secret("tok-1").fingerprint
    assert purge["event"] == "purge"
    assert purge["why"] == "upstream answered 401 to GET api.example.com"
    assert "tok-1" not in log_file.read_text()


def test_the_json_event_log_records_failures_and_refuses_a_path_it_cannot_open(
    rules_file, tmp_path
):
    log_file = tmp_path / "events.jsonl"
    endpoint = Endpoint(error=TokenError("refused", status=401, error="invalid_client"))
    addon = ClientCredentials(fetch=endpoint)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_log_json=str(log_file), oauth_rules=str(rules_file))
        run(addon, flow())
        with pytest.raises(exceptions.OptionsError, match="oauth_log_json: cannot open"):
            tctx.configure(addon, oauth_log_json=str(tmp_path / "missing" / "events.jsonl"))
    _reload, failure = events(log_file)
    assert failure["event"] == "failure"
    assert (failure["status"], failure["error"], failure["permanent"]) == (
        401,
        "invalid_client",
        True,
    )


def status_table(addon: ClientCredentials) -> list[dict[str, str]]:
    """oauth.status as the console shows it, one dict per rule, by column title."""
    store, titles, *rows = addon.commands.status().splitlines()
    assert store == "store: memory (this process only)"
    columns = re.split(r"\s{2,}", titles)
    return [dict(zip(columns, re.split(r"\s{2,}", row), strict=False)) for row in rows]


def test_oauth_status_shows_each_rules_token_and_counters(rules_file):
    addon = ClientCredentials(fetch=Endpoint())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        (before,) = status_table(addon)
        for _ in range(3):
            run(addon, flow())
        (after,) = status_table(addon)
        assert tctx.master.commands.execute("oauth.flush") == "dropped 1 token(s)"
        (flushed,) = status_table(addon)
    assert (before["rule"], before["state"], before["token"]) == ("api", "missing", "-")
    assert before["credentials"] == "idp.example.com auto -"
    assert after["state"] == "valid"
    assert after["token"] == f"sha256:{Secret('tok-1').fingerprint}"
    assert (after["fetches"], after["hits"], after["injected"]) == ("1", "2", "3")
    assert 3500 < int(after["expires in"].removesuffix(" s")) <= 3590
    assert flushed["state"] == "missing"


def test_oauth_status_shows_the_last_error(rules_file):
    addon = ClientCredentials(fetch=Endpoint(error=TokenError("endpoint down", status=503)))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        run(addon, flow())
        (row,) = status_table(addon)
    assert (row["state"], row["failed"]) == ("failed", "1")
    assert row["last error"] == "endpoint down"


def test_no_rules_no_status(tmp_path):
    addon = ClientCredentials()
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(tmp_path / "missing.yaml"))
        assert tctx.master.commands.execute("oauth.status") == (
            "store: memory (this process only)\nno rules loaded"
        )
        assert tctx.master.commands.execute("oauth.explain https://a.example/") == (
            "no valid rules file is loaded"
        )


class View:
    """Stands in for mitmweb's and the console's flow list."""

    name = "view"

    def __init__(self) -> None:
        self.flows: list = []

    def add(self, flows: list) -> None:
        self.flows += flows


EXCHANGE = Exchange(
    method="POST",
    url="https://idp.example.com/token?tenant=a",
    request_headers=[("Authorization", "Basic [redacted]")],
    request_body=b"grant_type=client_credentials",
    started=1000.0,
    ended=1000.5,
    status=200,
    reason="OK",
    response_headers=[("Content-Type", "application/json")],
    response_body=b"{}",
)


@pytest.mark.parametrize(("setting", "shown"), [("auto", 1), ("on", 1), ("off", 0)])
def test_token_exchanges_go_to_the_flow_list_as_oauth_show_exchanges_says(
    rules_file, setting, shown
):
    addon, view = ClientCredentials(), View()
    with taddons.context(addon, view) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file), oauth_show_exchanges=setting)
        (creds,) = addon.cache.credential_sets()
        addon.client.observer(creds, EXCHANGE)
    assert len(view.flows) == shown


def test_an_exchange_flow_shows_the_exchange_and_is_never_sent(rules_file):
    shown = exchange_flow(EXCHANGE, ("api",))
    failed = exchange_flow(
        Exchange("POST", "http://idp.example.com/token", [], b"", 1.0, 2.0, error="timed out"),
        (),
    )
    assert (shown.request.port, shown.request.path) == (443, "/token?tenant=a")
    assert shown.response.status_code == 200
    assert shown.metadata["oauth"]["rules"] == ["api"]
    assert shown.comment == "oauth: token exchange for rule api: HTTP 200"
    assert failed.request.port == 80
    assert failed.error.msg == "timed out"
    assert failed.comment == "oauth: token exchange for rule ?: timed out"
    replayed = shown.copy()  # as mitmweb's replay sends it: live, without its response
    replayed.response, replayed.live = None, True
    addon = ClientCredentials(fetch=Endpoint())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        assert addon.requestheaders(replayed) is None
    assert replayed.error.msg == mflow.Error.KILLED_MESSAGE


def test_a_broken_edit_is_reported_once_and_the_rules_stay(rules_file, tmp_path):
    log_file = tmp_path / "events.jsonl"
    addon = ClientCredentials(fetch=Endpoint())

    async def scenario() -> None:
        with taddons.context(addon) as tctx:
            tctx.configure(addon, oauth_log_json=str(log_file), oauth_rules=str(rules_file))
            loaded = addon.injector.rules
            rules_file.write_text("rules: [1]\n")
            await addon.watcher.reload_if_changed()
            await addon.watcher.reload_if_changed()  # the same broken file: not again
            assert addon.injector.rules is loaded
            rules_file.write_text(RULES.replace("name: api", "name: api2"))
            await addon.watcher.reload_if_changed()
            assert [r.name for r in addon.injector.rules.rules] == ["api2"]

    asyncio.run(scenario())
    assert [e["event"] for e in events(log_file)] == ["reload", "reload_failed", "reload"]
    assert events(log_file)[1]["rule"] == "#1"


def test_a_dpop_rule_shows_its_key_and_each_request_gets_a_proof(tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES + "    dpop: true\n")
    addon = ClientCredentials(fetch=Endpoint(token_type="DPoP"))
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=str(rules_file))
        first, second = flow(), flow(method="POST")
        run(addon, first)
        run(addon, second)
        (row,) = status_table(addon)
        jkt = addon.injector.proofs.thumbprint(addon.cache.credential_sets().popitem()[0])
    assert jkt is not None
    assert row["credentials"] == "idp.example.com auto DPoP -"
    assert row["token"] == f"sha256:{Secret('tok-1').fingerprint} (DPoP jkt {jkt})"
    assert first.request.headers["Authorization"] == "DPoP tok-1"
    proofs = [f.request.headers["DPoP"] for f in (first, second)]
    assert proofs[0] != proofs[1]
    assert f"DPoP-bound to key {jkt}" in first.comment
