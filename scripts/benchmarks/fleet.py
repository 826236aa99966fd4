"""6. Shared tokens: fleets of mitmdump processes on one store, and what sharing costs.

- cold: N instances x 25 concurrent first requests each → token fetches, per store.
- sustained: 4 instances under traffic, tokens living 4 s (a refresh every 2 s) → fetches.
- steady: CPU per request with the store memory, sqlite and redis, side by side.
- prefetch: the first request's latency, with a token endpoint that takes 0.2 s, with and
  without `oauth_prefetch`.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from scripts.benchmarks.common import (
    ADDON,
    LOAD,
    LOAD_CORE,
    Ports,
    Proxy,
    Results,
    cpu_per_request,
    idp_stats,
    load,
    pinned,
)
from tests.support.redis import REDIS_SERVER, RedisServer

COLD_REQUESTS = 25


def measure(work: Path, ca: Path, ports: Ports, sizes: list[int], seconds: float) -> Results:
    with _stores(work) as stores:
        return {
            "cold": {
                kind: {str(n): _cold(work, ca, ports, kind, store, n) for n in sizes}
                for kind, store in stores.items()
            },
            "sustained": {
                kind: _sustained(work, ca, ports, kind, store, seconds)
                for kind, store in stores.items()
            },
            "steady": _steady(work, ca, ports, stores, seconds),
            "prefetch": _prefetch(work, ca, ports),
        }


@contextlib.contextmanager
def _stores(work: Path) -> Iterator[dict[str, str]]:
    """memory, sqlite, and redis where redis-server is installed."""
    stores = {"memory": "memory", "sqlite": f"sqlite:{work / 'fleet.db'}"}
    if REDIS_SERVER is None:
        yield stores
        return
    server = RedisServer(Path(tempfile.mkdtemp(dir=work))).start()
    try:
        yield {**stores, "redis": server.url}
    finally:
        server.stop()


def _rules(work: Path, ports: Ports, client: str, lifetime: int, delay: float = 0.0) -> Path:
    path = work / f"rules-{client}.yaml"
    path.write_text(
        f"rules:\n  - {{name: {client}, match: {{host: 127.0.0.1, port: {ports['http']}, "
        f"scheme: http}}, token_url: 'http://127.0.0.1:{ports['idp']}/token/{lifetime}/{delay}', "
        f"client_id: {client}, client_secret: s, auth_style: params}}\n"
    )
    return path


def _fleet(work: Path, ca: Path, rules: Path, store: str, n: int, **options: str) -> list[Proxy]:
    return [
        Proxy(f"fleet-{i}", work, ca, ADDON, rules, options={"oauth_store": store, **options})
        for i in range(n)
    ]


def _burst(proxy: Proxy, url: str) -> dict[str, object]:
    """A load configuration: COLD_REQUESTS requests at once, each on its own connection."""
    return {"mode": "burst", "count": COLD_REQUESTS, "targets": [{"proxy": proxy.port, "url": url}]}


def _cold(work: Path, ca: Path, ports: Ports, kind: str, store: str, n: int) -> Results:
    client = f"cold-{kind}-{n}"
    proxies = _fleet(work, ca, _rules(work, ports, client, 86400, 0.2), store, n)
    url = f"http://127.0.0.1:{ports['http']}/v1"
    try:
        bursts = [
            subprocess.Popen(
                pinned(LOAD_CORE, [sys.executable, str(LOAD), json.dumps(_burst(p, url))]),
                stdout=subprocess.PIPE,
                text=True,
            )
            for p in proxies
        ]
        answers = [json.loads(b.communicate(timeout=300)[0]) for b in bursts]
    finally:
        for proxy in proxies:
            proxy.stop()
    statuses = [s for a in answers for s in a["statuses"]]
    return {
        "requests": len(statuses),
        "ok": statuses.count(200),
        "fetches": len(idp_stats(ports).get(client, [])),
    }


def _sustained(
    work: Path, ca: Path, ports: Ports, kind: str, store: str, seconds: float
) -> Results:
    """4 instances, tokens of 4 s (usable 2 s): fetches per refresh period for the fleet."""
    client = f"sustained-{kind}"
    proxies = _fleet(work, ca, _rules(work, ports, client, 4), store, 4)
    url = f"http://127.0.0.1:{ports['http']}/v1"
    try:
        answer = load(
            {
                "mode": "throughput",
                "duration": seconds,
                "targets": [{"proxy": p.port, "url": url, "connections": 1} for p in proxies],
            }
        )
    finally:
        for proxy in proxies:
            proxy.stop()
    fetches = len(idp_stats(ports).get(client, []))
    return {
        "seconds": seconds,
        "requests": sum(answer["counts"]),
        "errors": sum(answer["errors"]),
        "fetches": fetches,
        "fetches_per_period": fetches / (seconds / 2),
    }


def _steady(work: Path, ca: Path, ports: Ports, stores: dict[str, str], seconds: float) -> Results:
    """CPU per request, each store's mitmdump loaded at the same time on one core."""
    proxies = {
        kind: Proxy(
            kind,
            work,
            ca,
            ADDON,
            _rules(work, ports, f"steady-{kind}", 86400),
            options={"oauth_store": store},
        )
        for kind, store in stores.items()
    }
    rounds = cpu_per_request(proxies, f"http://127.0.0.1:{ports['http']}/v1", 5, seconds)
    return {
        kind: {
            "cpu_us": statistics.median(r[kind] for r in rounds),
            "vs_memory": statistics.median(r[kind] / r["memory"] for r in rounds),
        }
        for kind in proxies
    }


def _prefetch(work: Path, ca: Path, ports: Ports) -> Results:
    """The first request's latency, with a token endpoint that takes 0.2 s."""
    result = {}
    url = f"http://127.0.0.1:{ports['http']}/v1"
    for prefetch in ("false", "true"):
        client = f"prefetch-{prefetch}"
        proxy = Proxy(
            client,
            work,
            ca,
            ADDON,
            _rules(work, ports, client, 86400, 0.2),
            options={"oauth_prefetch": prefetch},
        )
        try:
            deadline = time.monotonic() + 30
            while prefetch == "true" and "token fetched" not in proxy.log.read_text():
                if time.monotonic() > deadline:
                    raise RuntimeError("the prefetch did not happen")
                time.sleep(0.01)
            answer = load(
                {"mode": "burst", "count": 1, "targets": [{"proxy": proxy.port, "url": url}]}
            )
        finally:
            proxy.stop()
        result[f"prefetch {prefetch}"] = {"first_request_ms": answer["latencies"][0] * 1000}
    return result
