"""4. Loading rules, mitmdump's start-up, and reloading rules under traffic."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scripts.benchmarks.common import (
    ADDON,
    LOAD,
    LOAD_CORE,
    Ports,
    Proxy,
    Results,
    load,
    pinned,
    rules_files,
)

RELOAD_WINDOW = 3.5
"""Seconds after a change of the rules file in which its reload is done: the file is checked
every second, and the rest leaves room to read and index 10,000 rules on a busy machine."""


def measure(work: Path, ca: Path, ports: Ports, loads: int) -> Results:
    from mitm_oauth.config.load import load_rules
    from mitm_oauth.matching.index import RuleIndex

    one, many = rules_files(work, ports)
    load_times = []
    for _ in range(loads):
        started = time.perf_counter()
        RuleIndex(load_rules(many, environ={}))
        load_times.append(time.perf_counter() - started)
    small = Proxy("1 rule", work, ca, ADDON, one)
    small.stop()
    big = Proxy("10k rules", work, ca, ADDON, many)
    try:  # reload the 10k rules under traffic: does any request wait for it?
        url = f"http://127.0.0.1:{ports['http']}/x"
        load({"mode": "burst", "count": 1, "targets": [{"proxy": big.port, "url": url}]})
        config = {
            "mode": "latency",
            "duration": 1 + 2 * RELOAD_WINDOW + 0.5,
            "pause": 0.01,
            "targets": [{"proxy": big.port, "url": url, "connections": 2}],
        }
        proc = subprocess.Popen(
            pinned(LOAD_CORE, [sys.executable, str(LOAD), json.dumps(config)]),
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(1)
        touched_at = time.monotonic()  # the same rules: the usual reload changes a few
        many.write_text(many.read_text() + "# touched\n")
        time.sleep(RELOAD_WINDOW)
        changed_at = time.monotonic()  # every rule changed: nothing can be kept
        many.write_text(many.read_text().replace("client_secret: s}", "client_secret: s2}"))
        samples: list[list[float]] = json.loads(proc.communicate(timeout=60)[0])["samples"]
    finally:
        big.stop()

    def worst(start: float, end: float) -> float:
        return 1000 * max(t for s, t, _ in samples if start <= s < end)

    return {
        "load_10k_rules_s": statistics.median(load_times),
        "mitmdump_start_1_rule_s": small.startup,
        "mitmdump_start_10k_rules_s": big.startup,
        "max_latency_before_reload_ms": worst(0, touched_at),
        "max_latency_during_reload_ms": worst(touched_at, changed_at),
        "max_latency_during_full_reload_ms": worst(changed_at, changed_at + RELOAD_WINDOW),
    }
