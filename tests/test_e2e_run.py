"""End to end: `mitm-oauth run -- CMD` puts a real client behind a real mitmdump, then stops it."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLIENT_SECRET, rule, rules
from tests.support.certs import ServerCert
from tests.support.proxy import Mitmdump
from tests.support.servers import EventStreamServer, Recorded, RecordingServer, Reply

MITM_OAUTH = Path(sys.executable).parent / "mitm-oauth"
ROOT = Path(__file__).parent.parent
CLIENTS = Path(__file__).parent / "clients"


def needs(program: str) -> pytest.MarkDecorator:
    """Runtime tests run where the runtime is installed (scripts/test says which are)."""
    return pytest.mark.skipif(shutil.which(program) is None, reason=f"{program} is not installed")


def run_behind(
    tmp_path: Path,
    rules_text: str,
    command: list[str],
    *,
    server_cert: ServerCert | None,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """`mitm-oauth run` with `command`; mitmproxy trusts `server_cert`'s CA for upstreams."""
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules_text)
    args = [str(MITM_OAUTH), "run", "--rules", str(rules_file)]
    args += ["--set", f"confdir={tmp_path / 'confdir'}"]
    if server_cert is not None:
        args += ["--set", f"ssl_verify_upstream_trusted_ca={server_cert.ca_file}"]
    outside = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    return subprocess.run(
        [*args, "--", *command],
        capture_output=True,
        text=True,
        timeout=120,
        env={**outside, **env},
    )


def authorizations(server: RecordingServer) -> list[str | None]:
    return [r.header("Authorization") for r in server.requests]


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_curl_gets_its_token_and_never_sees_the_secret(
    tmp_path, server_cert, idp, api, api_tls, tls
):
    server = api_tls if tls else api
    secret_rule = rule("api", server, idp, client_secret="${API_SECRET}")
    script = f"curl -sS -o /dev/null -w '%{{http_code}}' {server.origin}/v1 && echo && env"
    done = run_behind(
        tmp_path,
        rules(secret_rule),
        ["sh", "-c", script],
        server_cert=server_cert,
        API_SECRET=CLIENT_SECRET,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "200"
    assert authorizations(server) == ["Bearer sentinel-token-1"]
    assert "API_SECRET" not in done.stdout  # the app's environment holds no secret
    assert CLIENT_SECRET not in done.stdout + done.stderr
    assert "oauth: 1 request(s) got a token" in done.stderr


def test_an_api_with_an_internal_ca_gets_a_502_that_says_so_and_no_token(tmp_path, idp, api_tls):
    """What the README tells users to look for before they set ssl_verify_upstream_trusted_ca."""
    done = run_behind(
        tmp_path,
        rules(rule("api", api_tls, idp)),
        ["curl", "-sS", f"{api_tls.origin}/v1"],
        server_cert=None,
    )
    assert "Certificate verify failed: unable to get local issuer certificate" in done.stdout
    assert api_tls.requests == []


PYTHON_CLIENT = """
import sys, urllib.request, httpx, requests
url = sys.argv[1]
print(urllib.request.urlopen(url).status, httpx.get(url).status_code, requests.get(url).status_code)
"""


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_python_gets_its_token_with_urllib_httpx_and_requests(
    tmp_path, server_cert, idp, api, api_tls, tls
):
    """Tools skip proxies for loopback by default or by NO_PROXY: a local API behind a rule
    must not be skipped."""
    server = api_tls if tls else api
    done = run_behind(
        tmp_path,
        rules(rule("api", server, idp)),
        [sys.executable, "-c", PYTHON_CLIENT, f"{server.origin}/v1"],
        server_cert=server_cert,
        NO_PROXY="127.0.0.1,localhost",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "200", "200"]
    assert authorizations(server) == ["Bearer sentinel-token-1"] * 3


def test_the_commands_exit_status_is_passed_on(tmp_path, server_cert, idp, api):
    done = run_behind(
        tmp_path, rules(rule("api", api, idp)), ["sh", "-c", "exit 7"], server_cert=server_cert
    )
    assert done.returncode == 7


WAITS_FOR_SIGTERM = """
import os, signal, sys
def stop(signum, frame):
    print("got SIGTERM", flush=True)
    sys.exit(42)
signal.signal(signal.SIGTERM, stop)
print(os.environ["HTTP_PROXY"], flush=True)
signal.pause()
"""


def test_a_signal_reaches_the_command_and_the_proxy_stops_after_it(tmp_path, idp, api):
    """CI cancels a job with SIGTERM: the command gets it, the proxy stops once it has ended."""
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules(rule("api", api, idp)))
    args = [str(MITM_OAUTH), "run", "--rules", str(rules_file)]
    args += ["--set", f"confdir={tmp_path / 'confdir'}", "--"]
    with subprocess.Popen(
        [*args, sys.executable, "-c", WAITS_FOR_SIGTERM],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as runner:
        try:
            assert runner.stdout is not None
            ready, _, _ = select.select([runner.stdout], [], [], 30)
            assert ready, "the command did not start"
            proxy = runner.stdout.readline().strip()  # the command runs: it says so
            assert proxy.startswith("http://127.0.0.1:")
            runner.send_signal(signal.SIGTERM)
            out, err = runner.communicate(timeout=30)
        finally:
            runner.kill()
    assert runner.returncode == 42
    assert out.strip() == "got SIGTERM"
    assert "oauth: 0 request(s) got a token" in err
    with pytest.raises(httpx.ConnectError):  # the proxy is gone
        httpx.get("http://example.test/", proxy=proxy, trust_env=False)


def test_a_command_that_cannot_run_is_one_line_and_status_127(tmp_path, server_cert, idp, api):
    done = run_behind(
        tmp_path, rules(rule("api", api, idp)), ["no-such-command-here"], server_cert=server_cert
    )
    assert done.returncode == 127  # as a shell says it
    assert "error: cannot run no-such-command-here: No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_bad_rules_file_stops_before_the_command_runs(tmp_path, server_cert):
    ran = tmp_path / "ran"
    done = run_behind(
        tmp_path,
        "rules:\n  - name: api\n    match: {host: api.example.com, prot: 443}\n",
        ["touch", str(ran)],
        server_cert=server_cert,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: ")
    assert "unknown key 'prot' (did you mean 'port'?)" in done.stderr
    assert "Traceback" not in done.stderr
    assert not ran.exists()


NODE_CLIENT = """
const url = process.argv[1];
const module = url.startsWith("https:") ? require("node:https") : require("node:http");
const get = (agent) => new Promise((resolve, reject) => {
  module.get(url, { agent }, (answer) => {
    answer.resume();
    answer.on("end", () => resolve(answer.statusCode));
  }).on("error", reject);
});
(async () => {
  const own = new module.Agent({ keepAlive: true });  // an agent the app makes itself
  const statuses = [await get(undefined), await get(own), (await fetch(url)).status];
  own.destroy();
  console.log(...statuses);
})().catch((e) => { console.error(e); process.exit(3); });
"""


def routing_node() -> str | None:
    """A Node that routes by itself (NODE_USE_ENV_PROXY), where scripts/test could fetch one."""
    found = sorted((ROOT / ".runtimes").glob("node-*/bin/node"))
    return str(found[-1]) if found else None


NODES = [
    pytest.param("node", "Agent", marks=needs("node"), id="path-node"),
    pytest.param(
        routing_node(),
        "EnvHttpProxyAgent",
        marks=pytest.mark.skipif(routing_node() is None, reason="scripts/test fetches it"),
        id="node-routing-by-itself",
    ),
]


@pytest.mark.parametrize(("node", "dispatcher"), NODES)
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_node_gets_its_token_with_the_http_modules_and_fetch(
    tmp_path, server_cert, idp, api, api_tls, tls, node, dispatcher
):
    """Node 20 reads no proxy variable: the preload routes `http`, `https` (the global agent
    and an app's own) and `fetch`. A Node that routes by itself (`dispatcher` tells which did)
    gets NODE_USE_ENV_PROXY, and the preload routes only the agents it leaves direct."""
    server = api_tls if tls else api
    client = NODE_CLIENT + "console.log(globalThis[Symbol.for('undici.globalDispatcher.1')]"
    client += ".constructor.name);\n"
    done = run_behind(
        tmp_path,
        rules(rule("api", server, idp)),
        [node, "-e", client, f"{server.origin}/v1"],
        server_cert=server_cert,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [dispatcher, "200", "200", "200"]
    assert authorizations(server) == ["Bearer sentinel-token-1"] * 3


@needs("java")
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_java_gets_its_token_with_both_jdk_clients(tmp_path, server_cert, idp, api, api_tls, tls):
    """Java reads no proxy variable and trusts only its own store: `run` sets both."""
    server = api_tls if tls else api
    done = run_behind(
        tmp_path,
        rules(rule("api", server, idp)),
        ["java", str(CLIENTS / "Fetch.java"), f"{server.origin}/v1"],
        server_cert=server_cert,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", "200"]
    assert authorizations(server) == ["Bearer sentinel-token-1"] * 2


HEAD = "0123456789abcdef0123456789abcdef01234567"


def git_refs(request: Recorded) -> Reply:
    """The dumb HTTP protocol's answer to `info/refs`: one branch."""
    return Reply(body=f"{HEAD}\trefs/heads/main\n", content_type="text/plain")


@needs("git")
@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_git_gets_its_token(tmp_path, server_cert, idp, tls):
    """git negotiates its own content types: its rule leaves `Accept` alone."""
    with RecordingServer(git_refs, tls=server_cert if tls else None) as server:
        done = run_behind(
            tmp_path,
            rules(rule("git", server, idp, accept=None)),
            ["git", "ls-remote", f"{server.origin}/team/repo.git"],
            server_cert=server_cert,
            GIT_TERMINAL_PROMPT="0",
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [HEAD, "refs/heads/main"]
    assert server.requests, "git never reached the server"
    for request in server.requests:  # the smart protocol's probe, then the dumb one's
        assert request.path.startswith("/team/repo.git/")
        assert request.header("Authorization") == "Bearer sentinel-token-1"
        assert request.header("Accept") != "application/json"


STREAM_CLIENT = """
import sys, urllib.request
origin = sys.argv[1]
with urllib.request.urlopen(origin + "/events") as stream:
    print(stream.readline().decode().strip())
    urllib.request.urlopen(origin + "/ack").read()
    print(stream.read().decode().strip())
"""


@pytest.mark.parametrize("content_type", ["text/event-stream", "application/x-ndjson"])
def test_a_streamed_response_reaches_the_app_as_it_arrives(
    tmp_path, server_cert, idp, content_type
):
    """The app reads the first event and answers it while the stream is still open."""
    with EventStreamServer(content_type) as server:
        done = run_behind(
            tmp_path,
            rules(rule("events", server, idp)),
            [sys.executable, "-c", STREAM_CLIENT, server.origin],
            server_cert=server_cert,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["data: one", "data: two"]
    assert server.acked_in_time
    assert server.authorizations == ["Bearer sentinel-token-1"] * 2


@needs("wget")
def test_wget_over_https_gets_its_token(tmp_path, server_cert, idp, api_tls):
    done = run_behind(
        tmp_path,
        rules(rule("api", api_tls, idp)),
        ["wget", "-q", "-O", "-", f"{api_tls.origin}/v1"],
        server_cert=server_cert,
    )
    assert done.returncode == 0, done.stderr
    assert authorizations(api_tls) == ["Bearer sentinel-token-1"]


def by_hand_block(port: int) -> str:
    """The README's by-hand settings, as they stand, for a mitmdump on `port`."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- by hand: tests/test_e2e_run.py runs this block -->")
    block = readme[start : readme.index("<!-- end of by hand -->", start)]
    block = block.split("```sh\n", 1)[1].rsplit("```", 1)[0]
    return block.replace("127.0.0.1:8080", f"127.0.0.1:{port}").replace("Port=8080", f"Port={port}")


@needs("node")
@needs("java")
@needs("git")
def test_the_readmes_by_hand_settings_route_every_runtime(tmp_path, server_cert, idp, api_tls):
    """Without `run`: mitmdump started on its own, the README's block run as it stands."""
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules(rule("api", api_tls, idp, accept=None)))
    url = f"{api_tls.origin}/v1"
    clients = {
        "curl": f"curl -sS -o /dev/null -w '%{{http_code}}\\n' {url}",
        "python": f"{sys.executable} -c '{PYTHON_CLIENT}' {url}",
        "node": f"node -e '{NODE_CLIENT}' {url}",
        "java": f"java {CLIENTS / 'Fetch.java'} {url} 2>/dev/null",
        "git": f"git ls-remote {api_tls.origin}/team/repo.git >/dev/null 2>&1 || true",
    }
    home = tmp_path / "home"
    home.mkdir()
    outside = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    with Mitmdump(rules_file, home / ".mitmproxy", upstream_ca=server_cert.ca_file) as proxy:
        script = by_hand_block(proxy.port) + "\n" + "\n".join(clients.values())
        done = subprocess.run(
            ["bash", "-ec", script],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env={**outside, "HOME": str(home), "GIT_TERMINAL_PROMPT": "0"},
        )
    assert done.returncode == 0, done.stderr
    # curl 1, Python 3, Node 3, Java 2; git's exit status: the API's answer is no repository
    assert done.stdout.split()[:9] == ["200"] * 9
    git_requests = [r for r in api_tls.requests if "/team/repo.git/" in r.path]
    assert git_requests
    assert authorizations(api_tls) == ["Bearer sentinel-token-1"] * len(api_tls.requests)
    assert len(api_tls.requests) == 9 + len(git_requests)
