"""7. DPoP: what a proof per request costs.

- proofs: proofs signed per second in-process, per algorithm (one core, this process).
- side by side: CPU per request of a DPoP rule next to the same rule without DPoP, both
  mitmdump processes loaded at the same time on one core.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from mitm_oauth.oauth.dpop import ALGORITHMS, generate_key, proof
from scripts.benchmarks.common import ADDON, Ports, Proxy, Results, cpu_per_request

SIGNED = 2_000


def measure(work: Path, ca: Path, ports: Ports, rounds: int, seconds: float) -> Results:
    return {
        "proofs_per_second": _proofs(),
        "side_by_side": _side_by_side(work, ca, ports, rounds, seconds),
    }


def _proofs() -> dict[str, float]:
    rates = {}
    for algorithm in ALGORITHMS:
        key = generate_key(algorithm)
        started = time.perf_counter()
        for _ in range(SIGNED):
            proof(key, "GET", "https://api.example.com/v1/items", access_token="t" * 40)
        rates[algorithm] = SIGNED / (time.perf_counter() - started)
    return rates


def _rules(work: Path, ports: Ports, dpop: bool) -> Path:
    kind = "dpop-token" if dpop else "token"
    path = work / f"rules-dpop-{dpop}.yaml"
    path.write_text(
        f"rules:\n  - {{name: api, match: {{host: 127.0.0.1, port: {ports['http']}, "
        f"scheme: http}}, token_url: 'http://127.0.0.1:{ports['idp']}/{kind}/86400/0', "
        f"client_id: dpop-{dpop}, client_secret: s, auth_style: params, "
        f"dpop: {str(dpop).lower()}}}\n"
    )
    return path


def _side_by_side(work: Path, ca: Path, ports: Ports, rounds: int, seconds: float) -> Results:
    proxies = {
        name: Proxy(name, work, ca, ADDON, _rules(work, ports, dpop))
        for name, dpop in (("bearer", False), ("dpop", True))
    }
    per_round = cpu_per_request(proxies, f"http://127.0.0.1:{ports['http']}/v1", rounds, seconds)
    return {
        "bearer_cpu_us": statistics.median(r["bearer"] for r in per_round),
        "dpop_cpu_us": statistics.median(r["dpop"] for r in per_round),
        "dpop_vs_bearer": statistics.median(r["dpop"] / r["bearer"] for r in per_round),
    }
