"""`mitm-oauth run -- CMD`: one command that puts an app behind the proxy and takes it down after.

Starts mitmdump with the addon on 127.0.0.1 and a free port, waits until it
listens and its CA exists, runs CMD with an environment that sends its traffic
through the proxy and trusts the proxy's CA, and exits with CMD's status. The
variables the rules read secrets from, and those that open the shared token
store, are left out of CMD's environment: the app no longer needs them.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from ..config.environment import references
from ..config.load import load_rules, read_document
from ..store.sealing import KEY_VARIABLE
from ..store.spec import PASSWORD_VARIABLE
from .environment import child_environment, trust_files

ENTRY = "from mitm_oauth.mitm.addon import ClientCredentials\n\naddons = [ClientCredentials()]\n"
"""The script mitmdump loads, written to a folder of its own: nothing else lands on sys.path."""
SECRET_FIELDS = ("client_secret", "client_id", "token_headers", "endpoint_params")
"""Fields whose `${VAR}`s the app must not see: secrets, and what KrakenD configs put there."""
DEFAULT_OPTIONS = ("flow_detail=0", "oauth_stream_responses=all")
"""No flow is shown, so none needs its body: the app sees each response as it arrives."""
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
        port, reader = _wait_for_port(proxy, lines)
        try:
            if port is None:
                sys.stderr.write("".join(lines))
                print("error: mitmdump did not start", file=sys.stderr)
                return 2
            ca = _confdir(options) / "mitmproxy-ca-cert.pem"
            if not ca.is_file():  # mitmdump writes it before it listens
                print(f"error: mitmdump listens, but its CA is not at {ca}", file=sys.stderr)
                return 2
            trust = trust_files(ca, folder, os.environ)
            secrets = _secret_names(rules) | _store_secret_names(options)
            env = child_environment(os.environ, port, trust, secrets=secrets)
            return _run_child(command, env)
        finally:
            _stop(proxy, lines, reader)


def _start(script: Path, rules: str, options: Sequence[str]) -> subprocess.Popen[str]:
    mitmdump = Path(sys.executable).parent / "mitmdump"
    args = [str(mitmdump), "--listen-host", "127.0.0.1", "--listen-port", "0"]
    args += ["-s", str(script)]
    for option in (f"oauth_rules={rules}", *DEFAULT_OPTIONS, *options):  # the user's win
        args += ["--set", option]
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
    )


def _wait_for_port(
    proxy: subprocess.Popen[str], lines: deque[str]
) -> tuple[int | None, threading.Thread]:
    """The port mitmdump listens on, once it says so (None if it exits or takes too long), and
    the thread that goes on reading its output into `lines`."""
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
    reader = threading.Thread(target=read, args=(proxy.stdout,), daemon=True)
    reader.start()
    listening.wait(START_TIMEOUT)
    return (found[0] if found else None), reader


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


def _stop(proxy: subprocess.Popen[str], lines: deque[str], reader: threading.Thread) -> None:
    """Stop mitmdump and print the addon's summary of what it did."""
    proxy.terminate()
    try:
        proxy.wait(10)
    except subprocess.TimeoutExpired:
        proxy.kill()
        proxy.wait()
    reader.join(10)  # its last lines, the summary among them, may still be on their way
    for line in lines:
        if _SUMMARY.search(line):
            sys.stderr.write(line)


def _confdir(options: Sequence[str]) -> Path:
    given = [o.split("=", 1)[1] for o in options if o.startswith("confdir=")]
    return Path(given[-1] if given else "~/.mitmproxy").expanduser()


def _store_secret_names(options: Sequence[str]) -> set[str]:
    """The variables that open the shared token store: its keys, its password, and any
    variable `oauth_store` names. With them the app could read every stored token."""
    names = {KEY_VARIABLE, PASSWORD_VARIABLE}
    for option in options:
        if option.startswith("oauth_store="):
            names |= references(option)
    return names


def _secret_names(rules: str) -> set[str]:
    """The variables the rules read secrets from."""
    document = read_document(rules)
    names: set[str] = set()
    for rule in document.get("rules") or []:
        for field in SECRET_FIELDS:
            if isinstance(rule, dict) and field in rule:
                names |= references(rule[field])
    return names
