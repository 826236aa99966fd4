"""Which responses the addon streams, as `oauth_stream_responses` says, in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons

from mitm_oauth.mitm.addon import ClientCredentials
from tests.support.inprocess import RULES, Endpoint, flow, run


def answered(status: int, content_type: str) -> http.HTTPFlow:
    f = flow()
    f.response = http.Response.make(status, b"", {"Content-Type": content_type})
    return f


@pytest.mark.parametrize(
    ("choice", "content_type", "streamed"),
    [
        ("events", "text/event-stream; charset=utf-8", True),
        ("events", "application/json", False),
        ("all", "application/json", True),
        ("off", "text/event-stream", False),
    ],
)
def test_responses_stream_as_the_option_says(tmp_path: Path, choice, content_type, streamed):
    (tmp_path / "rules.yaml").write_text(RULES)
    addon = ClientCredentials(fetch=Endpoint())
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon, oauth_rules=str(tmp_path / "rules.yaml"), oauth_stream_responses=choice
        )
        f = answered(200, content_type)
        addon.responseheaders(f)
        assert bool(f.response.stream) is streamed


@pytest.mark.parametrize(("retry_on_401", "streamed"), [(True, False), (False, True)])
def test_a_401_that_a_replay_may_replace_is_kept_whole(tmp_path: Path, retry_on_401, streamed):
    (tmp_path / "rules.yaml").write_text(RULES + f"    retry_on_401: {str(retry_on_401).lower()}\n")
    addon = ClientCredentials(fetch=Endpoint())
    with taddons.context(addon) as tctx:
        tctx.configure(
            addon, oauth_rules=str(tmp_path / "rules.yaml"), oauth_stream_responses="all"
        )
        f = flow()
        run(addon, f)
        assert f.request.headers["Authorization"] == "Bearer tok-1"
        f.response = http.Response.make(401, b"", {"Content-Type": "application/json"})
        addon.responseheaders(f)
        assert bool(f.response.stream) is streamed
