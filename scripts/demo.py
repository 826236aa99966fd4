"""A self-contained demo: a token endpoint, an API and mitmdump with the addon, all on loopback.

Run it with scripts/demo. It shows what the API receives through the proxy (the
token as a fingerprint), a token refresh, a request the rules leave alone, and
the addon's own log lines; then it stops everything it started.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TOKEN_LIFETIME = 4  # seconds: short, so the demo can show a refresh


def fingerprint(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:8]


class Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class TokenEndpoint(Quiet):
    numbers = itertools.count(1)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = f"demo-token-{next(self.numbers)}-{os.urandom(4).hex()}"
        self.reply(
            200, {"access_token": token, "token_type": "bearer", "expires_in": TOKEN_LIFETIME}
        )


class Api(Quiet):
    def do_GET(self) -> None:
        authorization = self.headers.get("Authorization")
        if authorization:
            scheme, _, token = authorization.partition(" ")
            authorization = f"{scheme} <{fingerprint(token)}>"
        self.reply(
            200,
            {
                "path": self.path,
                "authorization": authorization,
                "accept": self.headers.get("Accept"),
            },
        )


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    ).start()
    return server


class Mitm:
    """mitmdump or mitmweb with the addon on an ephemeral port, its output collected."""

    def __init__(self, program: str, rules: Path, workdir: Path, *options: str) -> None:
        self.log: list[str] = []
        self._port: list[int] = []
        self._listening = threading.Event()
        self.process = subprocess.Popen(
            [
                str(BIN / program),
                "--listen-host",
                "127.0.0.1",
                "--listen-port",
                "0",
                "--set",
                f"confdir={workdir / 'mitmproxy'}",
                *options,
                "-s",
                str(ROOT / "addon/client_credentials.py"),
                "--set",
                f"oauth_rules={rules}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "DEMO_CLIENT_SECRET": os.urandom(8).hex()},
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.append(line)
            if m := re.search(r"HTTP\(S\) proxy listening at .*:(\d+)", line):
                self._port.append(int(m.group(1)))
                self._listening.set()

    def wait_listening(self, timeout: float = 30) -> str | None:
        """The proxy's URL once it listens; None if it did not start in time."""
        if not self._listening.wait(timeout):
            return None
        return f"http://127.0.0.1:{self._port[0]}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def get(proxy: str, url: str) -> str:
    if shutil.which("curl"):
        command = ["curl", "-sS", "--max-time", "10", "-x", proxy, url]
        print(f"$ curl -x {proxy} {url}")
        return subprocess.run(
            command, capture_output=True, text=True, timeout=20, check=True
        ).stdout
    import urllib.request  # curl is missing: same request with the standard library

    print(f"$ (urllib) GET {url} via {proxy}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy}))
    with opener.open(url, timeout=10) as response:
        return response.read().decode()


def main() -> int:
    idp, api = serve(TokenEndpoint), serve(Api)
    idp_url = f"http://127.0.0.1:{idp.server_port}/oauth/token"
    api_url = f"http://127.0.0.1:{api.server_port}"
    workdir = Path(tempfile.mkdtemp(prefix="oauth-demo-"))
    rules = workdir / "rules.yaml"
    rules.write_text(
        f"""\
rules:
  - name: demo-api
    match:
      host: 127.0.0.1
      port: {api.server_port}
      scheme: http        # plain HTTP is for this loopback demo only; the default is https
      path: /v1
    token_url: {idp_url}
    client_id: demo-client
    client_secret: ${{DEMO_CLIENT_SECRET}}
    scopes: orders.read,orders.write
"""
    )
    print(f"Demo token endpoint: {idp_url} (tokens live {TOKEN_LIFETIME} s)")
    print(f"Demo API:            {api_url} (answers with what it received)")
    print(f"\nRules ({rules}):\n{rules.read_text()}")

    proxy = Mitm("mitmdump", rules, workdir)
    try:
        proxy_url = proxy.wait_listening()
        if proxy_url is None:
            print("mitmdump did not start:\n" + "".join(proxy.log))
            return 1
        print(f"mitmdump with the addon: {proxy_url}\n")

        print("1. A request the rules match gets a token (the API shows its fingerprint):")
        print(get(proxy_url, f"{api_url}/v1/orders"))
        print("2. Another one reuses the cached token:")
        print(get(proxy_url, f"{api_url}/v1/orders/42"))
        wait = TOKEN_LIFETIME / 2 + 0.3
        print(
            f"3. {wait:g} s later the token is near its expiry, so the next request gets a new one:"
        )
        time.sleep(wait)
        print(get(proxy_url, f"{api_url}/v1/orders"))
        print("4. A path outside the rule passes through untouched:")
        print(get(proxy_url, f"{api_url}/public/health"))
    finally:
        proxy.stop()
        idp.shutdown()
        api.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)

    print("The addon's log (tokens appear only as fingerprints):")
    for line in proxy.log:
        if "token" in line or "rule(s) loaded" in line:
            print("  " + line.rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
