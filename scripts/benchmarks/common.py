"""What the measurements share: the mitmdump processes, the load generator, the rules files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import processes

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
HERE = Path(__file__).resolve().parent
LOAD = HERE / "standalone" / "load.py"
SERVERS = HERE / "standalone" / "servers.py"
ADDONS = HERE / "addons"
TRIVIAL = ADDONS / "trivial_addon.py"
ADDON = ROOT / "addon" / "client_credentials.py"
PROXY_CORE, LOAD_CORE = "0", "1"

Ports = dict[str, int]
"""The peers' ports: "http" and "https" (the upstream servers), "idp" (the token endpoint)."""
Results = dict[str, Any]
"""A measurement's results, as the report reads them and --json writes them."""
Variant = tuple[str, Path | None, Path | None]
"""A variant's name, the script mitmdump loads (None: none) and its rules file (None: none)."""


def pinned(core: str, args: list[str]) -> list[str]:
    return (
        ["taskset", "-c", core, *args]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1
        else args
    )


def rules_text(n: int, http_port: int, https_port: int, token_url: str) -> str:
    """n rules: exact hosts, wildcards and path prefixes mixed; the last two match the peers."""
    lines = ["rules:"]
    for i in range(n - 1):
        host = f"h{i}.example.com" if i % 3 != 1 else f"*.w{i}.example.com"
        path = f"/p{i}" if i % 3 == 2 else "/"
        lines.append(
            f"  - {{name: r{i}, match: {{host: '{host}', path: '{path}'}}, "
            f"token_url: '{token_url}', client_id: c{i}, client_secret: s}}"
        )
    for name, port, scheme in (("target", http_port, "http"), ("target-tls", https_port, "https")):
        lines.append(
            f"  - {{name: {name}, match: {{host: 127.0.0.1, port: {port}, "
            f"scheme: {scheme}}}, token_url: '{token_url}', client_id: target, "
            f"client_secret: s}}"
        )
    return "\n".join(lines) + "\n"


def rules_files(work: Path, ports: Ports) -> tuple[Path, Path]:
    """A file of 1 rule and one of 10,000, both covering the peers, tokens living a day."""
    token_url = f"http://127.0.0.1:{ports['idp']}/token/86400/0"
    files = work / "rules-1.yaml", work / "rules-10k.yaml"
    for path, count in zip(files, (1, 10_000), strict=True):
        path.write_text(rules_text(count, ports["http"], ports["https"], token_url))
    return files


def measured_variants(work: Path, ports: Ports) -> list[Variant]:
    """(name, script, rules) of the variants profiled and counted: plain, trivial, ours twice."""
    one, many = rules_files(work, ports)
    return [
        ("plain", None, None),
        ("trivial addon", TRIVIAL, None),
        ("ours, 1 rule", ADDON, one),
        ("ours, 10k rules", ADDON, many),
    ]


class Proxy:
    """A mitmdump process, pinned, quiet, listening on an ephemeral port."""

    def __init__(
        self,
        name: str,
        work: Path,
        ca: Path,
        script: Path | None = None,
        rules: Path | None = None,
        options: dict[str, str] | None = None,
        core: str = PROXY_CORE,
        also: tuple[Path, ...] = (),
        under: tuple[str, ...] = (),
    ) -> None:
        """`under`: a command mitmdump runs under (valgrind), which must keep its pid."""
        args = [
            *under,
            str(BIN / "mitmdump"),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--set",
            f"confdir={work / 'confdir'}",
            "--set",
            "flow_detail=0",
            "--set",
            f"ssl_verify_upstream_trusted_ca={ca}",
        ]
        for each in (*also, *([script] if script else [])):
            args += ["-s", str(each)]
        if rules:
            args += ["--set", f"oauth_rules={rules}"]
        for key, value in (options or {}).items():
            args += ["--set", f"{key}={value}"]
        self.name = name
        self.log = work / f"{re.sub(r'[^a-z0-9]+', '-', name)}-{time.monotonic_ns()}.log"
        started, limit = time.monotonic(), 300 if under else 60
        with self.log.open("w") as out:
            self.process = subprocess.Popen(pinned(core, args), stdout=out, stderr=out)
        while not (m := re.search(r"proxy listening at .*:(\d+)", self.log.read_text())):
            if self.process.poll() is not None or time.monotonic() - started > limit:
                raise RuntimeError(f"{name} did not start:\n{self.log.read_text()}")
            time.sleep(0.01)
        self.port = int(m.group(1))
        self.startup = time.monotonic() - started

    def cpu_ns(self) -> int:
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):  # a thread may end meanwhile
                total += int((task / "schedstat").read_text().split()[0])
        return total

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        processes.stop(self.process)


def load(config: dict[str, Any]) -> Results:
    out = subprocess.run(
        pinned(LOAD_CORE, [sys.executable, str(LOAD), json.dumps(config)]),
        capture_output=True,
        text=True,
        timeout=config.get("duration", 0) + 300,
        check=True,
    )
    results: Results = json.loads(out.stdout)
    return results


def idp_stats(ports: Ports) -> dict[str, list[float]]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ports['idp']}/stats", timeout=10) as answer:
        fetched: dict[str, list[float]] = json.load(answer)
        return fetched


def cpu_per_request(
    proxies: dict[str, Proxy], url: str, rounds: int, seconds: float
) -> list[dict[str, float]]:
    """Each proxy's CPU µs per request, round by round, all loaded at once (two connections
    each), after a second of warm-up that fetches their tokens. Stops the proxies."""
    targets = [{"proxy": p.port, "url": url, "connections": 2} for p in proxies.values()]
    per_round: list[dict[str, float]] = []
    try:
        load({"mode": "throughput", "duration": 1, "targets": targets})
        for _ in range(rounds):
            before = {name: p.cpu_ns() for name, p in proxies.items()}
            answer = load({"mode": "throughput", "duration": seconds, "targets": targets})
            assert not any(answer["errors"]), answer
            per_round.append(
                {
                    name: (p.cpu_ns() - before[name]) / 1000 / max(count, 1)
                    for (name, p), count in zip(proxies.items(), answer["counts"], strict=True)
                }
            )
    finally:
        for proxy in proxies.values():
            proxy.stop()
    return per_round
