"""`mitm-oauth run -- CMD`: one command that puts an app behind the proxy and takes it down after.

Starts mitmdump with the addon on 127.0.0.1 and a free port, waits until it
listens and its CA exists, runs CMD with an environment that sends its traffic
through the proxy and trusts the proxy's CA, and exits with CMD's status. The
variables the rules read secrets from are left out of CMD's environment: the
app no longer needs them.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

import certifi

from .config.environment import references
from .config.load import load_rules, read_document

ENTRY = "from mitm_oauth.mitm.addon import ClientCredentials\n\naddons = [ClientCredentials()]\n"
"""The script mitmdump loads, written to a folder of its own: nothing else lands on sys.path."""
SECRET_FIELDS = ("client_secret", "client_id", "token_headers", "endpoint_params")
"""Fields whose `${VAR}`s the app must not see: secrets, and what KrakenD configs put there."""
CA_VARIABLES = (
    "SSL_CERT_FILE",  # OpenSSL: Python, Ruby, Go (with SSL_CERT_DIR unset), git's OpenSSL builds
    "REQUESTS_CA_BUNDLE",  # requests
    "CURL_CA_BUNDLE",  # curl
    "GIT_SSL_CAINFO",  # git
    "PIP_CERT",  # pip
    "AWS_CA_BUNDLE",  # the AWS CLI and SDKs
    "NODE_EXTRA_CA_CERTS",  # Node adds it to its own store
)
"""Each names a bundle that replaces the default store: it holds the system's CAs too."""
_LISTENING = re.compile(r"proxy (?:\(\w+ mode\) )?listening at .*?:(\d+)")
_SUMMARY = re.compile(r"oauth: \d+ request\(s\) got a token")
START_TIMEOUT = 30.0
KEPT_LINES = 1000
"""mitmdump's last lines, kept to show why it failed and to find its summary."""


def run(rules: str, options: Sequence[str], command: Sequence[str]) -> int:
    """Run `command` behind the proxy; its exit status, or 2 when the proxy cannot start."""
    load_rules(rules)  # a bad rules file: its one-line message, before anything starts
    with tempfile.TemporaryDirectory(prefix="mitm-oauth-") as scratch:
        folder = Path(scratch)
        (folder / "script").mkdir()
        script = folder / "script" / "client_credentials.py"
        script.write_text(ENTRY)
        proxy = _start(script, rules, options)
        lines: deque[str] = deque(maxlen=KEPT_LINES)
        try:
            port = _wait_for_port(proxy, lines)
            if port is None:
                sys.stderr.write("".join(lines))
                print("error: mitmdump did not start", file=sys.stderr)
                return 2
            ca = _confdir(options) / "mitmproxy-ca-cert.pem"
            bundle = folder / "ca-bundle.pem"
            bundle.write_bytes(_system_cas() + b"\n" + ca.read_bytes())
            env = child_environment(os.environ, port, bundle, secrets=_secret_names(rules))
            return _run_child(command, env)
        finally:
            _stop(proxy, lines)


def child_environment(
    environ: Mapping[str, str], port: int, bundle: Path, *, secrets: set[str]
) -> dict[str, str]:
    """`environ` without the secrets, with the proxy and the CA bundle set for every tool."""
    proxy = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in environ.items() if name not in secrets}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = proxy
    # Local APIs are behind rules too: nothing bypasses the proxy.
    env["NO_PROXY"] = env["no_proxy"] = ""
    env.update(dict.fromkeys(CA_VARIABLES, str(bundle)))
    return env


def _start(script: Path, rules: str, options: Sequence[str]) -> subprocess.Popen[str]:
    mitmdump = Path(sys.executable).parent / "mitmdump"
    args = [str(mitmdump), "--listen-host", "127.0.0.1", "--listen-port", "0"]
    args += ["-s", str(script), "--set", f"oauth_rules={rules}", "--set", "flow_detail=0"]
    for option in options:
        args += ["--set", option]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    )


def _wait_for_port(proxy: subprocess.Popen[str], lines: deque[str]) -> int | None:
    """The port mitmdump listens on, once it says so; None if it exits or takes too long."""
    found: list[int] = []
    listening = threading.Event()

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.append(line)
            match = _LISTENING.search(line)
            if match and not found:
                found.append(int(match.group(1)))
                listening.set()
        listening.set()  # it exited

    assert proxy.stdout is not None
    threading.Thread(target=read, args=(proxy.stdout,), daemon=True).start()
    listening.wait(START_TIMEOUT)
    return found[0] if found else None


def _run_child(command: Sequence[str], env: dict[str, str]) -> int:
    """Run `command`, passing on the signals a user or CI sends, and return its exit status."""
    try:
        child = subprocess.Popen(list(command), env=env)
    except OSError as e:
        print(f"error: cannot run {command[0]}: {e.strerror}", file=sys.stderr)
        return 127

    def forward(signum: int, _frame: FrameType | None) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        status = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return status if status >= 0 else 128 - status


def _stop(proxy: subprocess.Popen[str], lines: deque[str]) -> None:
    """Stop mitmdump and print the addon's summary of what it did."""
    proxy.terminate()
    try:
        proxy.wait(10)
    except subprocess.TimeoutExpired:
        proxy.kill()
        proxy.wait()
    for line in lines:
        if _SUMMARY.search(line):
            sys.stderr.write(line)


def _confdir(options: Sequence[str]) -> Path:
    given = [o.split("=", 1)[1] for o in options if o.startswith("confdir=")]
    return Path(given[-1] if given else "~/.mitmproxy").expanduser()


def _system_cas() -> bytes:
    """The system's trusted CAs, which the bundle must keep; certifi's where there are none."""
    cafile = ssl.get_default_verify_paths().cafile
    return Path(cafile if cafile and Path(cafile).is_file() else certifi.where()).read_bytes()


def _secret_names(rules: str) -> set[str]:
    """The variables the rules read secrets from."""
    document = read_document(rules)
    names: set[str] = set()
    for rule in document.get("rules") or []:
        for field in SECRET_FIELDS:
            if isinstance(rule, dict) and field in rule:
                names |= references(rule[field])
    return names
