"""The response and error hooks in-process: purges, replays, and tokens taken out of flows."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import flow as mflow
from mitmproxy import http
from mitmproxy import io as mio
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.addons.upstream_auth import UpstreamAuth
from mitmproxy.test import taddons, tutils

from mitm_oauth.mitm.addon import ClientCredentials
from mitm_oauth.secret import Secret
from tests.support.inprocess import RULES, Endpoint, flow, redacted, run
from tests.support.servers import RecordingServer, Reply

LOCAL = (
    RULES.replace("host: api.example.com", "host: 127.0.0.1, scheme: http")
    + "    retry_on_401: true\n"
)
"""A rule for the loopback API that the replays go to."""


def rules(tmp_path: Path, text: str = RULES) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return str(path)


def test_a_401_purges_the_token_and_the_next_request_fetches_a_new_one(tmp_path, caplog):
    endpoint = Endpoint()
    addon = ClientCredentials(fetch=endpoint)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=rules(tmp_path))
        rejected, later = flow(), flow()
        run(addon, rejected)
        rejected.response = tutils.tresp(status_code=401)
        assert addon.response(rejected) is None  # no retry_on_401: nothing to wait for
        run(addon, later)
    assert len(endpoint.calls) == 2
    assert rejected.request.headers["Authorization"] == redacted("tok-1")
    assert later.request.headers["Authorization"] == "Bearer tok-2"
    assert "dropped: upstream answered 401 to GET api.example.com" in caplog.text


def test_an_accepted_token_stays_cached(tmp_path):
    endpoint = Endpoint()
    addon = ClientCredentials(fetch=endpoint)
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=rules(tmp_path))
        first, second = flow(), flow()
        run(addon, first)
        first.response = tutils.tresp(status_code=403)  # not in purge_on_status
        addon.response(first)
        run(addon, second)
    assert len(endpoint.calls) == 1
    assert second.request.headers["Authorization"] == "Bearer tok-1"


def replay_scenario(
    addon: ClientCredentials, f: http.HTTPFlow, rules_path: str, **options: object
) -> bool:
    """Inject, answer 401, run the response hook; whether it asked to be awaited (a replay)."""

    async def scenario() -> bool:
        with taddons.context(addon, UpstreamAuth(), Proxyserver()) as tctx:
            tctx.configure(addon, oauth_rules=rules_path, **options)
            await (addon.requestheaders(f) or asyncio.sleep(0))
            f.response = tutils.tresp(status_code=401)
            pending = addon.response(f)
            if pending is not None:
                await pending
            await addon.responses.replayer.aclose()
            return pending is not None

    return asyncio.run(scenario())


@pytest.fixture
def api_server() -> Iterator[RecordingServer]:
    """The upstream a replay goes to: it answers 200 with a small JSON body."""
    with RecordingServer(lambda _request: Reply(body={"replayed": True})) as server:
        yield server


def test_retry_on_401_replays_an_idempotent_request_with_a_new_token(tmp_path, api_server):
    addon = ClientCredentials(fetch=Endpoint())
    f = flow(f"{api_server.origin}/v1/x")
    assert replay_scenario(addon, f, rules(tmp_path, LOCAL))
    (replayed,) = api_server.requests
    assert replayed.header("Authorization") == "Bearer tok-2"
    assert f.response.status_code == 200
    assert f.request.headers["Authorization"] == redacted("tok-2")  # what it carries now


def test_a_post_is_not_replayed(tmp_path, api_server):
    endpoint = Endpoint()
    addon = ClientCredentials(fetch=endpoint)
    f = flow(f"{api_server.origin}/v1/x", method="POST")
    assert not replay_scenario(addon, f, rules(tmp_path, LOCAL))
    assert api_server.requests == []
    assert f.response.status_code == 401
    assert f.request.headers["Authorization"] == redacted("tok-1")
    assert len(endpoint.calls) == 1  # purged, but nothing fetched a new one yet


def test_a_replay_answer_larger_than_body_size_limit_keeps_the_first_answer(
    tmp_path, api_server, caplog
):
    addon = ClientCredentials(fetch=Endpoint())
    f = flow(f"{api_server.origin}/v1/x")
    caplog.set_level(logging.WARNING)
    assert replay_scenario(addon, f, rules(tmp_path, LOCAL), body_size_limit="10")
    assert len(api_server.requests) == 1
    assert f.response.status_code == 401
    assert f.request.headers["Authorization"] == redacted("tok-1")
    assert "replay failed (the answer is larger than 10 bytes); keeping the first" in caplog.text


def test_an_error_takes_the_token_out_of_the_flow(tmp_path):
    addon = ClientCredentials(fetch=Endpoint())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=rules(tmp_path))
        f = flow()
        run(addon, f)
        f.error = mflow.Error("connection reset by peer")
        addon.error(f)
        assert f not in addon.injector.injections
    assert f.request.headers["Authorization"] == redacted("tok-1")


def test_oauth_redact_flows_off_leaves_the_token_in_the_flow(tmp_path):
    addon = ClientCredentials(fetch=Endpoint())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=rules(tmp_path), oauth_redact_flows=False)
        f = flow()
        run(addon, f)
        f.response = tutils.tresp()
        addon.response(f)
    assert f.request.headers["Authorization"] == "Bearer tok-1"


def test_a_saved_flow_holds_the_fingerprint_of_a_custom_header_not_the_token(tmp_path):
    text = RULES + "    header_name: X-Api-Token\n    header_value: 'Key {access_token}'\n"
    addon = ClientCredentials(fetch=Endpoint())
    with taddons.context(addon) as tctx:
        tctx.configure(addon, oauth_rules=rules(tmp_path, text))
        f = flow()
        run(addon, f)
        assert f.request.headers["X-Api-Token"] == "Key tok-1"
        f.response = tutils.tresp()
        addon.response(f)
    saved = io.BytesIO()
    mio.FlowWriter(saved).add(f)
    assert b"tok-1" not in saved.getvalue()
    (loaded,) = mio.FlowReader(io.BytesIO(saved.getvalue())).stream()
    fingerprint = Secret("tok-1").fingerprint
    assert loaded.request.headers["X-Api-Token"] == f"Key [redacted sha256:{fingerprint}]"
    assert loaded.request.headers["Authorization"] == "Basic client-own"  # not the rule's header
