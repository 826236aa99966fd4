"""2. End to end: every variant's throughput and CPU per request, side by side."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

from scripts.benchmarks.common import (
    ADDON,
    ADDONS,
    TRIVIAL,
    Ports,
    Proxy,
    Results,
    load,
    rules_files,
)


def measure(work: Path, ca: Path, ports: Ports, rounds: int, seconds: float) -> Results:
    one, many = rules_files(work, ports)
    variants = {
        "twin": (None, None),
        "trivial addon": (TRIVIAL, None),
        "trivial + imports": (ADDONS / "trivial_imports.py", None),
        "trivial + hooks": (ADDONS / "trivial_hooks.py", None),
        "ours, 1 rule": (ADDON, one),
        "ours, 10k rules": (ADDON, many),
    }
    # Started in a random order: a variant's place in the start order shows in its results, so
    # that bias must not fall on the same variant in every run.
    order = random.sample(list(variants), len(variants))
    proxies = [Proxy("plain", work, ca)]  # first: it creates the CA the others share
    proxies += [Proxy(name, work, ca, *variants[name]) for name in order]
    names = ["plain", *variants]
    results: Results = {"start_order": order, "schemes": {}}
    try:
        for scheme in ("http", "https"):
            url = f"{scheme}://127.0.0.1:{ports[scheme]}/v1/items"
            targets = [{"proxy": p.port, "url": url, "connections": 2} for p in proxies]
            ca_file = str(work / "confdir" / "mitmproxy-ca-cert.pem")
            load({"mode": "throughput", "duration": 1, "targets": targets, "ca": ca_file})
            per_round: list[dict[str, tuple[float, float]]] = []
            for _ in range(rounds):
                before = [p.cpu_ns() for p in proxies]
                answer = load(
                    {"mode": "throughput", "duration": seconds, "targets": targets, "ca": ca_file}
                )
                assert not any(answer["errors"]), answer
                cpu = [p.cpu_ns() - b for p, b in zip(proxies, before, strict=True)]
                per_round.append(
                    {
                        p.name: (count / seconds, ns / max(count, 1))
                        for p, count, ns in zip(proxies, answer["counts"], cpu, strict=True)
                    }
                )
            results["schemes"][scheme] = summarise(per_round, names)
    finally:
        for proxy in proxies:
            proxy.stop()
    return results


def summarise(per_round: list[dict[str, tuple[float, float]]], names: list[str]) -> Results:
    summary = {}
    for name in names:
        rate_ratio = [r[name][0] / r["plain"][0] for r in per_round]
        cpu_ratio = [r["plain"][1] / r[name][1] for r in per_round]  # >1: cheaper than plain
        # Paired with the trivial addon round by round: the addon's cost above the floor that
        # any addon pays.
        vs_trivial = [r["trivial addon"][1] / r[name][1] for r in per_round]
        summary[name] = {
            "req_per_s": statistics.median(r[name][0] for r in per_round),
            "cpu_us_per_request": statistics.median(r[name][1] for r in per_round) / 1000,
            "throughput_vs_plain": statistics.median(rate_ratio),
            "throughput_spread": [min(rate_ratio), max(rate_ratio)],
            "efficiency_vs_plain": statistics.median(cpu_ratio),
            "efficiency_spread": [min(cpu_ratio), max(cpu_ratio)],
            "efficiency_vs_trivial": statistics.median(vs_trivial),
            "efficiency_vs_trivial_quartiles": statistics.quantiles(vs_trivial, n=4)[::2],
        }
    return summary
