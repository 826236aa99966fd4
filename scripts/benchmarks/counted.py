"""2c. What each variant executes per request, counted under callgrind."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from scripts.benchmarks.common import Ports, Proxy, Results, load, measured_variants

COUNTED_REQUESTS = 100
SIMULATED_CACHE = "--LL=1048576,16,64"
"""The last-level cache callgrind simulates: 1 MiB, like a core's L2. Its misses stand for
the memory traffic a request causes."""


def measure(work: Path, ca: Path, ports: Ports, requests: int) -> Results:
    """Instructions and simulated cache misses per request in each mitmdump, under callgrind.

    Counted, not timed: the same code and inputs give nearly the same counts whatever else
    the machine does, so differences far below the side-by-side's resolution show. Cache
    misses stand for what the timing pays and the instruction count does not show.
    """
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        return {"skipped": "valgrind is not installed"}
    variants = measured_variants(work, ports)
    ca_file = str(work / "confdir" / "mitmproxy-ca-cert.pem")
    results: Results = {}
    for scheme in ("http", "https"):
        url = f"{scheme}://127.0.0.1:{ports[scheme]}/v1/items"
        results[scheme] = {}
        for i, (name, script, rules) in enumerate(variants):
            out = work / f"callgrind-{scheme}-{i}.out"
            under = (
                "env",
                "PYTHONHASHSEED=0",
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                "--cache-sim=yes",
                SIMULATED_CACHE,
                f"--callgrind-out-file={out}",
            )
            proxy = Proxy(name, work, ca, script, rules, under=under)
            try:
                target = {"proxy": proxy.port, "url": url}
                # Warm: the token fetched, mitmproxy's and our bytecode specialised.
                warm = load({"mode": "sequential", "count": 30, "targets": [target], "ca": ca_file})
                pid = str(proxy.process.pid)
                subprocess.run(
                    ["callgrind_control", "-i", "on", pid], check=True, capture_output=True
                )
                answer = load(
                    {"mode": "sequential", "count": requests, "targets": [target], "ca": ca_file}
                )
                for step in (["-i", "off"], ["-d"]):
                    subprocess.run(
                        ["callgrind_control", *step, pid], check=True, capture_output=True
                    )
            finally:
                proxy.stop()
            assert set(warm["statuses"] + answer["statuses"]) == {200}, answer
            results[scheme][name] = _per_request(Path(f"{out}.1"), requests)
    return results


def _per_request(dump: Path, requests: int) -> Results:
    """callgrind's totals divided by the requests: instructions, last-level cache misses."""
    events, totals = [], []
    for line in dump.read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("totals:"):
            totals = [int(v) for v in line.split()[1:]]
    count = dict(zip(events, totals, strict=True))
    return {
        "instructions": count["Ir"] / requests,
        "cache_misses": (count["ILmr"] + count["DLmr"] + count["DLmw"]) / requests,
    }
