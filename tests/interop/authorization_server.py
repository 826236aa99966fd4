"""panva/oidc-provider, a certified OpenID provider, run by Node.js on loopback for the tests.

`npm ci` installs the version pinned by the committed lockfile into
`tests/interop/node_modules` the first time (and again when the lockfile
changes); nothing else is downloaded.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.support import processes

HERE = Path(__file__).parent
NODE_MODULES = HERE / "node_modules"
STAMP = NODE_MODULES / ".installed-lockfile-sha256"


def install() -> None:
    """Make sure the pinned provider is installed; skip the caller's tests without Node.js.

    Test processes running side by side take turns (a lock file): `npm ci`
    starts by deleting node_modules, which would pull it from under another.
    """
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js (node and npm) is not installed: the interop tests need it")
    wanted = hashlib.sha256((HERE / "package-lock.json").read_bytes()).hexdigest()
    with open(HERE / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (STAMP.is_file() and STAMP.read_text() == wanted):
            _npm_ci()
            STAMP.write_text(wanted)


def _npm_ci() -> None:
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"npm ci failed in {HERE}:\n{result.stdout}{result.stderr}")


class AuthorizationServer:
    """One provider process. `events` are its token-request outcomes, in order."""

    def __init__(
        self,
        directory: Path,
        *,
        clients: list[dict[str, Any]],
        tls: dict[str, str],
        clock_offset: int = 0,
        dpop_nonce: bool = False,
    ) -> None:
        self.config = directory / f"provider-{id(self)}.json"
        self.config.write_text(
            json.dumps(
                {
                    "clients": clients,
                    "tls": tls,
                    "clockOffsetSeconds": clock_offset,
                    "dpopNonce": dpop_nonce,
                }
            )
        )
        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.process: subprocess.Popen[str] | None = None
        self.issuer = ""
        self.ports: dict[str, int] = {}
        self.stderr = ""
        self._closed = False
        """Its output has ended: it exited."""

    def url(self, path: str, listener: str = "mtls") -> str:
        """A URL on the listener that asks for client certificates ("mtls") or not ("plain")."""
        return f"https://127.0.0.1:{self.ports[listener]}{path}"

    def start(self, timeout: float = 30.0) -> AuthorizationServer:
        self.process = subprocess.Popen(
            ["node", str(HERE / "server.mjs"), str(self.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=HERE,
        )
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        with self._changed:
            if not self._changed.wait_for(lambda: self.issuer or self._closed, timeout):
                self.stop()
                raise TimeoutError(f"the authorization server did not start:\n{self.stderr}")
        if not self.issuer:
            self.stop()
            raise RuntimeError(f"the authorization server exited:\n{self.stderr}")
        return self

    def next_event(
        self, client: str, event: str, after: int, timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first `event` for `client` among the events from index `after` on.

        The provider reports an outcome on its output as it answers, so the
        report may arrive a moment after the answer: it is waited for.
        """

        def found() -> dict[str, Any] | None:
            return next(
                (e for e in self.events[after:] if e["client"] == client and e["event"] == event),
                None,
            )

        with self._changed:
            if not self._changed.wait_for(found, timeout):
                raise TimeoutError(f"no {event} for {client} after event {after}: {self.events}")
            result = found()
            assert result is not None
            return result

    @property
    def event_count(self) -> int:
        with self._changed:
            return len(self.events)

    def stop(self) -> None:
        processes.stop(self.process)

    def __enter__(self) -> AuthorizationServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if not line.startswith("{"):  # the provider's own notices
                self.stderr += line
                continue
            message = json.loads(line)
            with self._changed:
                if "issuer" in message:
                    self.issuer, self.ports = message["issuer"], message["ports"]
                else:
                    self.events.append(message)
                self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr += line
