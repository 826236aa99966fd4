"""Takes docs/mitmweb.png: mitmweb with the addon, after a few requests, in headless Chromium.

Needs Debian's chromium package. Run: .venv/bin/python scripts/screenshot.py
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from demo import ROOT, Api, Mitm, TokenEndpoint, get, serve


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> int:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    idp, api = serve(TokenEndpoint), serve(Api)
    workdir = Path(tempfile.mkdtemp(prefix="oauth-shot-"))
    rules = workdir / "rules.yaml"
    rules.write_text(
        f"""\
rules:
  - name: orders-api
    match: {{host: 127.0.0.1, port: {api.server_port}, scheme: http, path: /v1}}
    token_url: http://127.0.0.1:{idp.server_port}/oauth/token
    client_id: demo-client
    client_secret: ${{DEMO_CLIENT_SECRET}}
    scopes: orders.read
  - name: reports-api
    match: {{host: 127.0.0.1, port: {api.server_port}, scheme: http, path: /reports}}
    token_url: http://127.0.0.1:{idp.server_port + 1 if idp.server_port < 65535 else 1}/token
    client_id: reports
    client_secret: ${{DEMO_CLIENT_SECRET}}
"""
    )
    web_port = free_port()
    columns = ("icon", "path", "method", "status", "time", "comment")
    proxy = Mitm(
        "mitmweb",
        rules,
        workdir,
        "--web-host",
        "127.0.0.1",
        "--web-port",
        str(web_port),
        "--set",
        "web_open_browser=false",
        *(f"--set=web_columns={column}" for column in columns),
    )
    try:
        proxy_url = proxy.wait_listening()
        if proxy_url is None:
            print("mitmweb did not start:\n" + "".join(proxy.log), file=sys.stderr)
            return 1
        base = f"http://127.0.0.1:{api.server_port}"
        for path in ("/v1/orders", "/v1/orders/42", "/public/health", "/reports/daily"):
            get(proxy_url, base + path)
        time.sleep(0.5)  # let mitmweb publish the flows
        with urllib.request.urlopen(f"http://127.0.0.1:{web_port}/flows", timeout=10) as answer:
            flows = json.load(answer)
        exchange = next(f["id"] for f in flows if "token exchange" in f["comment"])
        out = ROOT / "docs" / "mitmweb.png"
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={workdir / 'chromium'}",
                "--hide-scrollbars",
                "--window-size=1500,900",
                "--virtual-time-budget=8000",
                f"--screenshot={out}",
                f"http://127.0.0.1:{web_port}/#/flows/{exchange}/request",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        print(f"wrote {out}")
    finally:
        proxy.stop()
        idp.shutdown()
        api.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
