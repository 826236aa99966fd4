"""3. The token endpoint's load: N concurrent cold-start requests, the fetches they cause."""

from __future__ import annotations

from pathlib import Path

from scripts.benchmarks.common import ADDON, PROXY_CORE, Ports, Proxy, Results, idp_stats, load


def measure(work: Path, ca: Path, ports: Ports, sizes: list[int]) -> Results:
    token_url = f"http://127.0.0.1:{ports['idp']}/token/86400/0.2"
    rules = work / "rules-cold.yaml"
    rules.write_text(
        "rules:\n"
        + "".join(
            f"  - {{name: cold-{n}, match: {{host: 127.0.0.1, port: {ports['http']}, scheme: http, "
            f"path: /cold-{n}}}, token_url: '{token_url}', client_id: cold-{n}, client_secret: s, "
            "auth_style: params}\n"
            for n in sizes
        )
    )
    proxy = Proxy("ours", work, ca, ADDON, rules, core=PROXY_CORE)
    result = {}
    try:
        for n in sizes:
            url = f"http://127.0.0.1:{ports['http']}/cold-{n}"
            answer = load(
                {"mode": "burst", "count": n, "targets": [{"proxy": proxy.port, "url": url}]}
            )
            fetches = len(idp_stats(ports).get(f"cold-{n}", []))
            result[str(n)] = {"ok": answer["statuses"].count(200), "fetches": fetches}
    finally:
        proxy.stop()
    return result
