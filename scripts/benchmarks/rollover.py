"""3. Latency across token rollovers, with and without refreshing ahead."""

from __future__ import annotations

from pathlib import Path

from scripts.benchmarks.common import ADDON, Ports, Proxy, Results, idp_stats, load


def measure(work: Path, ca: Path, ports: Ports, seconds: float, lifetime: int) -> Results:
    """Latency across token rollovers with an endpoint that takes 1 s to answer."""
    result = {}
    for label, ahead in (("refresh ahead (50 %)", "50"), ("no refresh ahead", "100")):
        client = f"roll-{ahead}"
        token_url = f"http://127.0.0.1:{ports['idp']}/token/{lifetime}/1"
        rules = work / f"rules-{client}.yaml"
        rules.write_text(
            f"rules:\n  - {{name: {client}, match: {{host: 127.0.0.1, port: "
            f"{ports['http']}, scheme: http}}, token_url: '{token_url}', "
            f"client_id: {client}, client_secret: s, "
            "auth_style: params}\n"
        )
        proxy = Proxy(
            label,
            work,
            ca,
            ADDON,
            rules,
            options={"oauth_expiry_delta": "1", "oauth_refresh_ahead": ahead},
        )
        try:
            url = f"http://127.0.0.1:{ports['http']}/x"
            load({"mode": "burst", "count": 1, "targets": [{"proxy": proxy.port, "url": url}]})
            answer = load(
                {
                    "mode": "latency",
                    "duration": seconds,
                    "pause": 0.02,
                    "targets": [{"proxy": proxy.port, "url": url, "connections": 4}],
                }
            )
        finally:
            proxy.stop()
        latencies = sorted(s[1] for s in answer["samples"])
        fetches = idp_stats(ports).get(client, [])
        result[label] = {
            "requests": len(latencies),
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
            "max_ms": 1000 * latencies[-1],
            "waited_over_500_ms": sum(1 for t in latencies if t > 0.5),
            "fetches": len(fetches),
            "seconds": seconds,
        }
    return result
