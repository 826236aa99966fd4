"""Benchmarks: what the addon costs next to mitmproxy, and what the token endpoint sees.

Run with scripts/bench [--quick] [--json PATH]. Variants run side by side, pinned to the
same core and loaded at the same time (load and peers on the other core), because on a
shared machine proxies measured in turns differ by more than what is measured
(docs/performance.md, "How the benchmarks measure").
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from scripts.benchmarks import (
    counted,
    dpop,
    fleet,
    memory,
    micro,
    profile,
    report,
    rollover,
    side_by_side,
    startup,
    token_load,
)
from scripts.benchmarks.common import LOAD_CORE, SERVERS, Results, pinned
from tests.support import processes
from tests.support.certs import make_server_cert

SECTIONS = tuple(report.REPORTS)
SLOW = ("profile", "counted")


def main() -> int:
    parser = argparse.ArgumentParser(prog="scripts/bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, under a minute")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--only", choices=SECTIONS, action="append", help="run only this part (repeatable)"
    )
    args = parser.parse_args()
    # The profile needs long samples and the counts a slow simulator: not part of a quick run
    # unless asked for.
    only = set(args.only or (s for s in SECTIONS if not (args.quick and s in SLOW)))
    quick = args.quick
    work = Path(tempfile.mkdtemp(prefix="oauth-bench-"))
    cert = make_server_cert(work)
    ports_file = work / "ports.json"
    servers = subprocess.Popen(
        pinned(
            LOAD_CORE,
            [
                sys.executable,
                str(SERVERS),
                str(ports_file),
                str(cert.cert_file),
                str(cert.key_file),
            ],
        )
    )
    try:
        deadline = time.monotonic() + 30
        while not ports_file.exists() or not ports_file.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError("benchmark servers did not start")
            time.sleep(0.05)
        ports = json.loads(ports_file.read_text())
        parts: dict[str, Callable[[], Results]] = {
            "micro": lambda: micro.measure(rounds=5 if quick else 15),
            "side_by_side": lambda: side_by_side.measure(
                work, cert.ca_file, ports, rounds=3 if quick else 12, seconds=1.5 if quick else 5
            ),
            "profile": lambda: profile.measure(
                work, cert.ca_file, ports, seconds=4 if quick else 20
            ),
            "counted": lambda: counted.measure(work, cert.ca_file, ports, counted.COUNTED_REQUESTS),
            "token_load": lambda: token_load.measure(
                work, cert.ca_file, ports, [1, 10, 100] if quick else [1, 10, 100, 1000]
            ),
            "rollover": lambda: rollover.measure(
                work, cert.ca_file, ports, seconds=4 if quick else 12, lifetime=4
            ),
            "startup": lambda: startup.measure(work, cert.ca_file, ports, loads=1 if quick else 3),
            "memory": lambda: memory.measure(
                work, cert.ca_file, ports, 2_000 if quick else 100_000, seconds=3 if quick else 10
            ),
            "dpop": lambda: dpop.measure(
                work, cert.ca_file, ports, rounds=3 if quick else 8, seconds=2 if quick else 5
            ),
            "fleet": lambda: fleet.measure(
                work, cert.ca_file, ports, [1, 4] if quick else [1, 4, 8], 6 if quick else 12
            ),
        }
        results = {name: run() for name, run in parts.items() if name in only}
    finally:
        processes.stop(servers)
        shutil.rmtree(work, ignore_errors=True)
    print(report.report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    twin = results.get("side_by_side", {}).get("schemes", {})
    off = [s for s in twin if abs(twin[s]["twin"]["efficiency_vs_plain"] - 1) > 0.02]
    if off:
        print(
            f"\nREJECTED: the twin differs from plain by more than 2 % ({', '.join(off)}): "
            "the machine was too noisy for this run."
        )
        return 2
    return 0
