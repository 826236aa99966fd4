"""End to end: what an operator sees in mitmweb, the commands, the JSON event log, the summary."""

from __future__ import annotations

import json
import re
import time

import pytest

from tests.conftest import CLIENT_SECRET, curl, rule, rules
from tests.support.proxy import Mitmdump, Mitmweb
from tests.support.servers import Reply


def test_mitmweb_shows_comments_and_token_exchanges(start_proxy, issuer, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp, auth_style="params", scopes="read")), web=True)
    assert isinstance(proxy, Mitmweb)
    assert curl(proxy, f"{api.origin}/v1/items")[0] == 200
    flows = proxy.flows()
    comments = [f["comment"] for f in flows]
    exchange = next(f for f in flows if "token exchange" in f["comment"])
    api_flow = next(f for f in flows if f["request"]["path"] == "/v1/items")
    assert exchange["comment"] == "oauth: token exchange for rule api: HTTP 200", comments
    assert exchange["marked"] in (":key:", "\N{KEY}")  # mitmweb may render the emoji
    assert re.fullmatch(
        r"oauth: rule api: token sha256:[0-9a-f]{8}, usable until \d\d:\d\d:\d\d",
        api_flow["comment"],
    )
    with proxy.api() as web:
        sent = web.get(f"/flows/{exchange['id']}/request/content.data").text
        answered = web.get(f"/flows/{exchange['id']}/response/content.data").text
        api_request = web.get(f"/flows/{api_flow['id']}/request/content.data")
    assert "client_secret=[redacted]" in sent
    assert "client_id=client-api" in sent
    assert "scope=read" in sent
    assert json.loads(answered)["access_token"].startswith("[redacted sha256:")
    assert json.loads(answered)["expires_in"] == 3600
    assert api_request.status_code == 200
    everything = json.dumps(flows) + sent + answered
    assert CLIENT_SECRET not in everything
    assert "sentinel-token-1" not in everything
    # The exchange flow was shown, not sent: the endpoint saw one request, the API one.
    assert len(idp.requests) == 1
    assert len(api.requests) == 1


def test_mitmweb_marks_refused_flows_and_says_why(start_proxy, issuer, idp, api):
    issuer.reply = lambda r: Reply(
        401, {"error": "invalid_client", "error_description": "Unknown client"}
    )
    proxy = start_proxy(rules(rule("api", api, idp, auth_style="header")), web=True)
    assert curl(proxy, f"{api.origin}/v1")[0] == 502
    flows = proxy.flows()
    refused = next(f for f in flows if f["request"]["path"] == "/v1")
    exchange = next(f for f in flows if "token exchange" in f["comment"])
    assert refused["marked"] in (":warning:", "\N{WARNING SIGN}")
    assert refused["comment"] == (
        "oauth: rule api: no token, 502: token endpoint answered HTTP 401 (invalid_client)"
    )
    assert exchange["comment"] == "oauth: token exchange for rule api: HTTP 401"
    with proxy.api() as web:
        answered = web.get(f"/flows/{exchange['id']}/response/content.data").json()
    assert answered["error_description"] == "Unknown client"


def test_commands_through_mitmweb(start_proxy, idp, api):
    proxy = start_proxy(
        rules(
            rule("api", api, idp),
            rule("other", api, idp, match={"host": "other.example.com"}, client_id="other"),
        ),
        web=True,
    )
    curl(proxy, f"{api.origin}/v1")
    status = proxy.command("oauth.status")
    assert isinstance(status, str)
    api_row = next(line for line in status.splitlines() if line.startswith("api "))
    assert re.search(r"127\.0\.0\.1:\d+ auto - +valid +sha256:[0-9a-f]{8} +\d+ s +1 +0", api_row)
    other_row = next(line for line in status.splitlines() if line.startswith("other "))
    assert " missing " in other_row
    explained = proxy.command("oauth.explain", f"{api.origin}/v1/x", "POST")
    assert f"POST {api.origin}/v1/x → rule api" in explained
    assert "other  host 127.0.0.1 is not other.example.com" in explained
    assert proxy.command("oauth.refresh", "api") == "refreshing 1 credential set(s)"
    idp.wait_for_requests(2)
    proxy.wait_for_line(re.compile(r"token fetched for rule api \(forced\)"))
    assert proxy.command("oauth.flush") == "dropped 1 token(s)"
    curl(proxy, f"{api.origin}/v1")
    assert len(idp.requests) == 3
    assert [r.header("Authorization") for r in api.requests] == [
        "Bearer sentinel-token-1",
        "Bearer sentinel-token-3",
    ]


def test_mitmdump_does_not_show_exchanges_by_default_and_logs_json(
    start_proxy, tmp_path, issuer, idp
):
    from tests.support.servers import Recorded, RecordingServer

    events_file = tmp_path / "events.jsonl"
    revoked = {"sentinel-token-1"}

    def api_handler(request: Recorded) -> Reply:
        token = (request.header("Authorization") or "").removeprefix("Bearer ")
        return Reply(401 if token in revoked else 200)

    with RecordingServer(api_handler) as api:
        proxy = start_proxy(
            rules(rule("api", api, idp)), options={"oauth_log_json": str(events_file)}
        )
        curl(proxy, f"{api.origin}/")  # fetch, then 401: purge
        issuer.reply = lambda r: Reply(503, {"error": "temporarily_unavailable"})
        curl(proxy, f"{api.origin}/")  # fetch fails
        proxy.stop()
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds == ["reload", "fetch", "purge", "failure"]
    assert events[1]["rules"] == ["api"]
    assert events[1]["reason"] == "first use"
    assert re.fullmatch(r"[0-9a-f]{8}", events[1]["token"])
    assert events[3]["status"] == 503
    assert events[3]["permanent"] is False
    assert all(re.match(r"\d{4}-\d\d-\d\dT", e["time"]) for e in events)
    text = events_file.read_text()
    assert CLIENT_SECRET not in text
    assert "sentinel-token-1" not in text
    assert "token exchange" not in proxy.output
    assert proxy.printed(
        "oauth: 1 request(s) got a token, 1 refused; 2 token fetch(es), 1 failed, 1 purge(s)"
    )


def test_a_token_exchange_flow_replayed_from_mitmweb_is_not_sent(start_proxy, idp, api):
    proxy = start_proxy(rules(rule("api", api, idp)), web=True)
    curl(proxy, f"{api.origin}/v1")
    exchange = next(f for f in proxy.flows() if "token exchange" in f["comment"])
    with proxy.api() as web:
        assert web.post(f"/flows/{exchange['id']}/replay").status_code == 200
    replayed = wait_until(lambda: error_of(proxy, exchange["id"]))
    assert "killed" in replayed.lower()
    assert len(idp.requests) == 1


def error_of(proxy: Mitmweb, flow_id: str) -> str | None:
    flow = next(f for f in proxy.flows() if f["id"] == flow_id)
    return (flow.get("error") or {}).get("msg") if flow.get("is_replay") else None


def wait_until(probe, timeout: float = 10.0):
    """Poll `probe` until it returns something, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (result := probe()) is None:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("oauth_rule=other.yaml", "unknown option oauth_rule (did you mean oauth_rules?)"),
        (
            "oauth_refresh_ahed=50",
            "unknown option oauth_refresh_ahed (did you mean oauth_refresh_ahead?)",
        ),
        ("oauth_show_exchanges=yes", "oauth_show_exchanges must be one of auto, on, off"),
        ("oauth_stream_responses=yes", "oauth_stream_responses must be one of events, all, off"),
        ("oauth_store=mongodb://db", "oauth_store must be memory, sqlite:PATH, redis://"),
        (
            "oauth_store=sqlite:/nonexistent-dir/oauth.db",
            "sqlite:/nonexistent-dir/oauth.db: cannot open it: No such file or directory",
        ),
        ("oauth_refresh_ahead=150", "oauth_refresh_ahead is a percentage: at most 100"),
        ("oauth_token_timeout=0", "oauth_token_timeout must be at least 1"),
        ("oauth_token_timeout=soon", "oauth_token_timeout: not an integer: soon"),
        ("oauth_reload=maybe", 'oauth_reload: boolean must be "true", "false"'),
    ],
)
def test_a_wrong_option_stops_mitmdump_with_one_line(tmp_path, option, message):
    """mitmproxy keeps --set options for the scripts that declare them: a name no script
    declares was accepted without a word, a value it could not parse dropped the script without
    one, and an out-of-range value printed a traceback."""
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "rules:\n  - {name: api, match: {host: api.example.com}, "
        "token_url: 'https://idp.example.com/token', client_id: c, client_secret: s}\n"
    )
    proxy = Mitmdump(rules_file, tmp_path / "confdir", options=dict([option.split("=", 1)]))
    assert proxy.run_to_exit() == 1
    # mitmproxy's own words differ between versions: "Not an integer" (11), "Failed to parse
    # option oauth_token_timeout: not an integer" (12).
    said = proxy.output.lower().replace("failed to parse option ", "")
    errors = [line for line in said.splitlines() if message.lower() in line]
    assert len(errors) == 1, proxy.output
    assert "Traceback" not in proxy.output


def test_a_malformed_store_key_stops_mitmdump_with_one_line(tmp_path):
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        "rules:\n  - {name: api, match: {host: api.example.com}, "
        "token_url: 'https://idp.example.com/token', client_id: c, client_secret: s}\n"
    )
    proxy = Mitmdump(
        rules_file,
        tmp_path / "confdir",
        options={"oauth_store": f"sqlite:{tmp_path / 'oauth.db'}"},
        env={"OAUTH_STORE_KEY": "not-a-fernet-key-but-secret-ish"},
    )
    assert proxy.run_to_exit() == 1
    assert "OAUTH_STORE_KEY: key 1 of 1 is not a Fernet key" in proxy.output
    assert "not-a-fernet-key-but-secret-ish" not in proxy.output
    assert "Traceback" not in proxy.output
