"""A real mitmdump process with the addon, on an ephemeral loopback port."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from tests.support import processes

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addon" / "client_credentials.py"
# If the token client honoured proxy variables, it would hit this dead port and fail.
DEAD_PROXY = "http://127.0.0.1:9"
_LISTENING = re.compile(r"proxy (?:\(\w+ mode\) )?listening at .*?:(\d+)")


class Mitmdump:
    """Starts `mitmdump -s addon/client_credentials.py` and collects everything it prints."""

    program = "mitmdump"

    def __init__(
        self,
        rules_file: Path,
        confdir: Path,
        *,
        options: dict[str, str] | None = None,
        env: dict[str, str] | None = None,
        upstream_ca: Path | None = None,
        script: Path = ADDON,
        more_scripts: tuple[Path, ...] = (),
    ) -> None:
        """`script`: the addon's entry script, or a copy of it to edit while it runs;
        `more_scripts`: other scripts, loaded after it."""
        self.confdir = confdir
        self.rules_file = rules_file
        args = [
            str(Path(sys.executable).parent / self.program),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--set",
            f"confdir={confdir}",
            "-s",
            str(script),
            *(arg for extra in more_scripts for arg in ("-s", str(extra))),
            "--set",
            f"oauth_rules={rules_file}",
        ]
        if upstream_ca is not None:
            args += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
        for name, value in (options or {}).items():
            args += ["--set", f"{name}={value}"]
        self.args = args
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
            "HTTP_PROXY": DEAD_PROXY,
            "HTTPS_PROXY": DEAD_PROXY,
            "ALL_PROXY": DEAD_PROXY,
            **(env or {}),
        }
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    @property
    def output(self) -> str:
        with self._changed:
            return "".join(self.lines)

    def start(self, timeout: float = 30.0) -> Mitmdump:
        """Start and wait until it listens; raises if it exits first."""
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            cwd=ROOT,
        )
        threading.Thread(target=self._read, daemon=True).start()
        line = self.wait_for_line(_LISTENING, timeout, until_exit=True)
        if line is None:
            self.stop()
            raise RuntimeError(f"mitmdump did not start:\n{self.output}")
        match = _LISTENING.search(line)
        assert match
        self.port = int(match.group(1))
        return self

    def run_to_exit(self, timeout: float = 30.0) -> int:
        """For start-up failures: run until mitmdump exits by itself."""
        self.process = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=self.env,
            cwd=ROOT,
        )
        try:
            out, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        self.lines.append(out)
        return self.process.returncode

    def _read(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(
        self, pattern: re.Pattern[str], timeout: float = 10.0, *, until_exit: bool = False
    ) -> str | None:
        """The first printed line matching `pattern`, waiting up to `timeout` seconds."""

        def found() -> str | None:
            for line in self.lines:
                if pattern.search(line):
                    return line
            return None

        def ready() -> bool:
            exited = until_exit and self.process is not None and self.process.poll() is not None
            return found() is not None or exited

        with self._changed:
            self._changed.wait_for(ready, timeout)
            return found()

    def printed(self, text: str, timeout: float = 10.0) -> bool:
        """Whether `text` has been printed, waiting up to `timeout` seconds: a line mitmdump
        writes as it answers a request may still be on its way through the pipe."""
        return self.wait_for_count(text, 1, timeout)

    def wait_for_count(self, text: str, count: int, timeout: float = 10.0) -> bool:
        """Whether `text` has been printed `count` times, waiting up to `timeout` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: "".join(self.lines).count(text) >= count, timeout)

    def stop(self) -> None:
        processes.stop(self.process)

    def __enter__(self) -> Mitmdump:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Mitmweb(Mitmdump):
    """mitmweb with the addon; `api` talks to its web interface as the browser would."""

    program = "mitmweb"
    password = "test-password"

    def __init__(self, *args: object, web_port: int | None = None, **kwargs: object) -> None:
        """`web_port`: a free one by default; 0 lets mitmweb choose (and not say which)."""
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.web_port = free_port() if web_port is None else web_port
        self.args += [
            "--web-host",
            "127.0.0.1",
            "--web-port",
            str(self.web_port),
            "--set",
            "web_open_browser=false",
            "--set",
            f"web_password={self.password}",
        ]

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def api(self) -> httpx.Client:
        """A client of mitmweb's API: password (mitmproxy 12) and XSRF cookie (11 and 12)."""
        xsrf = "0123456789abcdef"  # double-submit: any value in both cookie and header
        client = httpx.Client(
            base_url=self.web_url,
            headers={"Authorization": f"Bearer {self.password}", "X-XSRFToken": xsrf},
            trust_env=False,
            timeout=10,
        )
        for name in ("_xsrf", "_mitmproxy_xsrf"):
            client.cookies.set(name, xsrf)
        return client

    def command(self, name: str, *arguments: str) -> object:
        with self.api() as api:
            response = api.post(f"/commands/{name}", json={"arguments": list(arguments)})
        response.raise_for_status()
        answer = response.json()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["value"]

    def flows(self) -> list[dict[str, object]]:
        with self.api() as api:
            response = api.get("/flows")
        response.raise_for_status()
        return response.json()


def free_port() -> int:
    """A loopback port that was free a moment ago (mitmweb cannot listen on port 0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
