"""5. Memory: the proxy's RSS over many requests."""

from __future__ import annotations

from pathlib import Path

from scripts.benchmarks.common import ADDON, PROXY_CORE, Ports, Proxy, Results, load, rules_text


def measure(work: Path, ca: Path, ports: Ports, requests: int, seconds: float) -> Results:
    token_url = f"http://127.0.0.1:{ports['idp']}/token/3600/0"
    rules = work / "rules-mem.yaml"
    rules.write_text(rules_text(1, ports["http"], ports["https"], token_url))
    proxy = Proxy("ours", work, ca, ADDON, rules, core=PROXY_CORE)
    url = f"http://127.0.0.1:{ports['http']}/m"
    targets = [{"proxy": proxy.port, "url": url, "connections": 4}]
    try:
        done = load({"mode": "throughput", "duration": 3, "targets": targets})["counts"][0]
        rss = [(done, proxy.rss_kib())]
        while done < requests:
            answer = load({"mode": "throughput", "duration": seconds, "targets": targets})
            done += answer["counts"][0]
            rss.append((done, proxy.rss_kib()))
    finally:
        proxy.stop()
    return {"rss_kib": rss, "growth_kib": rss[-1][1] - rss[0][1], "requests": done}
