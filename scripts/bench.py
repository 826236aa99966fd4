"""Benchmarks: what the addon costs next to mitmproxy, and what the token endpoint sees.

Run with scripts/bench [--quick] [--json PATH]. Variants run side by side, pinned to the
same core and loaded at the same time (load and peers on the other core), because on a
shared machine two identical proxies measured in turns differ by 20-40 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.support import processes  # noqa: E402
from tests.support.certs import make_server_cert  # noqa: E402

BIN = Path(sys.executable).parent
LOAD = ROOT / "scripts" / "benchlib" / "load.py"
SERVERS = ROOT / "scripts" / "benchlib" / "servers.py"
TRIVIAL = ROOT / "scripts" / "benchlib" / "trivial_addon.py"
ADDON = ROOT / "addon" / "client_credentials.py"
PROXY_CORE, LOAD_CORE = "0", "1"


def pinned(core: str, args: list[str]) -> list[str]:
    return (
        ["taskset", "-c", core, *args] if shutil.which("taskset") and os.cpu_count() > 1 else args
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


def rules_files(work: Path, ports: dict) -> tuple[Path, Path]:
    """A file of 1 rule and one of 10,000, both covering the peers, tokens living a day."""
    token_url = f"http://127.0.0.1:{ports['idp']}/token/86400/0"
    files = work / "rules-1.yaml", work / "rules-10k.yaml"
    for path, count in zip(files, (1, 10_000), strict=True):
        path.write_text(rules_text(count, ports["http"], ports["https"], token_url))
    return files


def measured_variants(work: Path, ports: dict) -> list[tuple[str, Path | None, Path | None]]:
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


def load(config: dict) -> dict:
    out = subprocess.run(
        pinned(LOAD_CORE, [sys.executable, str(LOAD), json.dumps(config)]),
        capture_output=True,
        text=True,
        timeout=config.get("duration", 0) + 300,
        check=True,
    )
    return json.loads(out.stdout)


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


# -- 1. the hook, in-process ----------------------------------------------------------


def micro(rounds: int) -> dict:
    from mitm_oauth.mitm.addon import ClientCredentials
    from mitm_oauth.oauth.response import Token
    from mitm_oauth.secret import Secret
    from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
    from mitmproxy.test import taddons, tflow, tutils

    from scripts.benchlib.trivial_addon import Trivial

    def flow():
        f = tflow.tflow()
        f.request = tutils.treq()
        f.request.url = "https://127.0.0.1:8443/v1/items"
        f.client_conn.sni = None
        return f

    async def timed(master: object, hook: object, n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await master.addons.handle_lifecycle(hook)  # type: ignore[attr-defined]
        return (time.perf_counter() - started) / n * 1e6

    async def side_by_side_calls(rules: Path, n: int = 2000) -> tuple[list[float], list[float]]:
        """Rounds of the trivial hook and ours, alternating, so both see the same machine."""

        async def fetch(creds: object) -> Token:
            return Token(Secret("tok"), "Bearer", 86400)

        ours_addon, trivial_addon = ClientCredentials(fetch=fetch), Trivial()
        ours_flow, trivial_flow = flow(), flow()
        ours_hook, trivial_hook = (
            HttpRequestHeadersHook(ours_flow),
            HttpRequestHeadersHook(trivial_flow),
        )
        with taddons.context(trivial_addon) as trivial_ctx, taddons.context(ours_addon) as tctx:
            tctx.configure(ours_addon, oauth_rules=str(rules))
            await tctx.master.addons.handle_lifecycle(ours_hook)
            assert ours_flow.request.headers["Authorization"].startswith("Bearer")
            trivial, ours = [], []
            for _ in range(rounds):
                trivial.append(await timed(trivial_ctx.master, trivial_hook, n))
                ours.append(await timed(tctx.master, ours_hook, n))
            return trivial, ours

    work = Path(tempfile.mkdtemp())
    result = {}
    for count in (1, 10_000):
        rules = work / f"rules-{count}.yaml"
        rules.write_text(rules_text(count, 8443, 8443, "https://idp.example.com/token"))
        trivial, ours = asyncio.run(side_by_side_calls(rules))
        result[f"{count} rule(s)"] = {
            "trivial_us": statistics.median(trivial),
            "ours_us": statistics.median(ours),
            "ratio": statistics.median(o / t for o, t in zip(ours, trivial, strict=True)),
            "ours_spread_us": [min(ours), max(ours)],
        }
    return result


# -- 2. end to end, side by side -----------------------------------------------------


def side_by_side(work: Path, ca: Path, ports: dict, rounds: int, seconds: float) -> dict:
    one, many = rules_files(work, ports)
    lib = ROOT / "scripts" / "benchlib"
    variants = {
        "twin": (None, None),
        "trivial addon": (TRIVIAL, None),
        "trivial + imports": (lib / "trivial_imports.py", None),
        "trivial + hooks": (lib / "trivial_hooks.py", None),
        "ours, 1 rule": (ADDON, one),
        "ours, 10k rules": (ADDON, many),
    }
    # Started in a random order: a variant's place seems to be worth about a point (the last
    # started measured lowest), which must not always fall on the same one.
    order = random.sample(list(variants), len(variants))
    proxies = [Proxy("plain", work, ca)]  # first: it creates the CA the others share
    proxies += [Proxy(name, work, ca, *variants[name]) for name in order]
    names = ["plain", *variants]
    results: dict = {"start_order": order, "schemes": {}}
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


def summarise(per_round: list[dict[str, tuple[float, float]]], names: list[str]) -> dict:
    summary = {}
    for name in names:
        rate_ratio = [r[name][0] / r["plain"][0] for r in per_round]
        cpu_ratio = [r["plain"][1] / r[name][1] for r in per_round]  # >1: cheaper than plain
        # Paired with the trivial addon round by round: the gap that target 2 is about.
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


# -- 2b. where the CPU goes, sampled -------------------------------------------------


def profile(work: Path, ca: Path, ports: dict, seconds: float) -> dict:
    """Where each mitmdump's CPU goes: the share of its samples in the addon's own code
    (py-spy), and the CPU time of its garbage collections per request.

    Proportions within one process: unlike ratios between processes, they do not move
    with the machine's load. The samples count what the hooks do; the collector's time,
    what their allocations cost later.
    """
    gc_time = ROOT / "scripts" / "benchlib" / "gc_time.py"
    variants = measured_variants(work, ports)
    results: dict = {}
    for scheme in ("http", "https"):
        proxies = [
            Proxy(
                name,
                work,
                ca,
                script,
                rules,
                also=(gc_time,),
                options={"gc_time_out": str(work / f"gc-{scheme}-{i}.json")},
            )
            for i, (name, script, rules) in enumerate(variants)
        ]
        try:
            samples = _sample(
                work, proxies, f"{scheme}://127.0.0.1:{ports[scheme]}/v1/items", seconds
            )
        finally:
            for proxy in proxies:
                proxy.stop()  # at exit, each writes its collector's time
        if samples is None:
            return {"skipped": "py-spy could not sample mitmdump (is ptrace allowed?)"}
        results[scheme] = {}
        for i, (name, script, _) in enumerate(variants):
            collected = json.loads((work / f"gc-{scheme}-{i}.json").read_text())
            results[scheme][name] = {
                **(
                    _share(samples[name], script.parent if script == ADDON else script)
                    if script
                    else {}
                ),
                "young_gc_us_per_request": 1e6
                * sum(collected["seconds"][:2])
                / max(collected["responses"], 1),
                "full_gcs": collected["runs"][2],
                "full_gc_ms_each": 1e3 * collected["seconds"][2] / max(collected["runs"][2], 1),
            }
    return results


def _sample(work: Path, proxies: list[Proxy], url: str, seconds: float) -> dict | None:
    """Load the proxies side by side and sample each with py-spy; None if it cannot attach."""
    targets = [{"proxy": p.port, "url": url, "connections": 2} for p in proxies]
    config = {
        "mode": "throughput",
        "duration": seconds + 2,
        "targets": targets,
        "ca": str(work / "confdir" / "mitmproxy-ca-cert.pem"),
    }
    loader = subprocess.Popen(
        pinned(LOAD_CORE, [sys.executable, str(LOAD), json.dumps(config)]),
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(1)
        outputs = {p.name: work / f"profile-{p.process.pid}.txt" for p in proxies}
        spies = [
            subprocess.Popen(
                pinned(
                    LOAD_CORE,
                    [
                        str(BIN / "py-spy"),
                        "record",
                        "--pid",
                        str(p.process.pid),
                        "--duration",
                        str(int(seconds)),
                        "--rate",
                        "250",
                        "--format",
                        "raw",
                        "--output",
                        str(outputs[p.name]),
                    ],
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for p in proxies
        ]
        if any(spy.wait(timeout=seconds + 60) != 0 for spy in spies):
            return None
        loader.wait(timeout=60)
    finally:
        if loader.poll() is None:
            loader.kill()
    return outputs


def _share(samples_file: Path, code: Path) -> dict:
    """Of py-spy's raw samples, the share with a frame in `code` (a file or folder), by the
    outermost such frame. py-spy names files absolutely or relative to the import path."""
    places = (f"({code}", f"({code.relative_to(ROOT)}")
    total, by_hook = 0, {}
    for line in samples_file.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        frames = [f for f in stack.split(";") if any(place in f for place in places)]
        if frames:
            hook = frames[0].split(" (")[0]
            by_hook[hook] = by_hook.get(hook, 0) + int(count)
    return {
        "samples": total,
        "share": sum(by_hook.values()) / max(total, 1),
        "by_hook": {h: n / max(total, 1) for h, n in sorted(by_hook.items(), key=lambda x: -x[1])},
    }


# -- 2c. what each variant executes, counted -----------------------------------------


COUNTED_REQUESTS = 100
SIMULATED_CACHE = "--LL=1048576,16,64"
"""The last-level cache callgrind simulates: 1 MiB, like a core's L2. Its misses stand for
the memory traffic a request causes."""


def counted(work: Path, ca: Path, ports: dict, requests: int) -> dict:
    """Instructions and simulated cache misses per request in each mitmdump, under callgrind.

    Counted, not timed: the same code and inputs give nearly the same counts whatever else
    the machine does, so differences far below the side-by-side's resolution show. Cache
    misses stand for what the timing pays and the instruction count does not show.
    """
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        return {"skipped": "valgrind is not installed"}
    variants = measured_variants(work, ports)
    ca_file = str(work / "confdir" / "mitmproxy-ca-cert.pem")
    results: dict = {}
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


def _per_request(dump: Path, requests: int) -> dict:
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


# -- 3. the token endpoint's load ----------------------------------------------------


def token_load(work: Path, ca: Path, ports: dict, sizes: list[int]) -> dict:
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


def idp_stats(ports: dict) -> dict[str, list[float]]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{ports['idp']}/stats", timeout=10) as answer:
        return json.load(answer)


def rollover(work: Path, ca: Path, ports: dict, seconds: float, lifetime: int) -> dict:
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


# -- 4. start-up and reload ----------------------------------------------------------


RELOAD_WINDOW = 3.5
"""Seconds after a change of the rules file in which its reload is done: checked every second,
read and indexed in ~1.2 s."""


def startup(work: Path, ca: Path, ports: dict, loads: int) -> dict:
    from mitm_oauth.config.rules import load_rules
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
        samples = json.loads(proc.communicate(timeout=60)[0])["samples"]
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


# -- 5. memory -----------------------------------------------------------------------


def memory(work: Path, ca: Path, ports: dict, requests: int, seconds: float) -> dict:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
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
        parts = {
            "micro": lambda: micro(rounds=5 if quick else 15),
            "side_by_side": lambda: side_by_side(
                work, cert.ca_file, ports, rounds=3 if quick else 12, seconds=1.5 if quick else 5
            ),
            "profile": lambda: profile(work, cert.ca_file, ports, seconds=4 if quick else 20),
            "counted": lambda: counted(work, cert.ca_file, ports, COUNTED_REQUESTS),
            "token_load": lambda: token_load(
                work, cert.ca_file, ports, [1, 10, 100] if quick else [1, 10, 100, 1000]
            ),
            "rollover": lambda: rollover(
                work, cert.ca_file, ports, seconds=4 if quick else 12, lifetime=4
            ),
            "startup": lambda: startup(work, cert.ca_file, ports, loads=1 if quick else 3),
            "memory": lambda: memory(
                work, cert.ca_file, ports, 2_000 if quick else 100_000, seconds=3 if quick else 10
            ),
        }
        results = {name: run() for name, run in parts.items() if name in only}
    finally:
        processes.stop(servers)
        shutil.rmtree(work, ignore_errors=True)
    print(report(results))
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


def report(r: dict) -> str:
    """The table, for the parts that ran."""
    lines: list[str] = []
    for name, part in REPORTS.items():
        if name in r:
            lines += part(r[name])
    return "\n".join(lines)


def report_micro(micro: dict) -> list[str]:
    lines = ["1. Hook cost, in-process through mitmproxy's addon manager (median µs per request)"]
    for label, m in micro.items():
        lines.append(
            f"   {label:<12} trivial {m['trivial_us']:5.1f}  ours {m['ours_us']:5.1f}  "
            f"ratio {m['ratio']:.2f}"
        )
    return lines


def report_side_by_side(side_by_side: dict) -> list[str]:
    lines = [
        "2. End to end, side by side on one core (median over rounds; spread min-max; "
        "vs trivial: efficiency paired round by round, with its quartiles)"
    ]
    lines.append(
        f"   {'':<18}{'req/s':>7} {'CPU µs/req':>11} {'throughput':>11} {'spread':>13} "
        f"{'efficiency':>11} {'spread':>13} {'vs trivial':>11} "
        f"{'quartiles':>13}"
    )
    for scheme, variants in side_by_side["schemes"].items():
        lines.append(f"   {scheme.upper()}")
        for name, v in variants.items():
            lines.append(
                f"   {name:<18}{v['req_per_s']:7.0f} {v['cpu_us_per_request']:11.0f} "
                f"{v['throughput_vs_plain']:11.3f} {spread(v['throughput_spread']):>13} "
                f"{v['efficiency_vs_plain']:11.3f} {spread(v['efficiency_spread']):>13} "
                f"{v['efficiency_vs_trivial']:11.3f} "
                f"{spread(v['efficiency_vs_trivial_quartiles']):>13}"
            )
    lines.append(
        f"   (started in this order after plain: {', '.join(side_by_side['start_order'])})"
    )
    return lines


def report_profile(profile: dict) -> list[str]:
    def line(name: str, v: dict, variants: dict) -> str:
        share = f"{v['share'] * 100:5.2f} %" if "share" in v else "      -"
        return (
            f"   {name:<18} code {share}   young collections "
            f"{v['young_gc_us_per_request']:5.1f} µs/request   full collections "
            f"{v['full_gcs']} x {v['full_gc_ms_each']:.0f} ms"
        )

    title = (
        "   Where mitmdump's CPU goes, side by side: share of py-spy samples in the addon's "
        "code; CPU time of the garbage collector's young and full collections"
    )
    return _per_scheme_and_variant(title, profile, line)


def report_counted(counted: dict) -> list[str]:
    def line(name: str, v: dict, variants: dict) -> str:
        trivial = variants["trivial addon"]
        instructions = v["instructions"] / trivial["instructions"]
        misses = v["cache_misses"] / trivial["cache_misses"]
        return (
            f"   {name:<18} instructions {v['instructions']:11,.0f} "
            f"({instructions:.4f} x trivial)   cache misses "
            f"{v['cache_misses']:7,.0f} ({misses:.2f} x trivial)"
        )

    title = (
        "   Counted under callgrind, per request: instructions, and misses of a simulated "
        "1 MiB cache (they repeat within 0.1-0.3 %, however busy the machine)"
    )
    return _per_scheme_and_variant(title, counted, line)


def _per_scheme_and_variant(
    title: str, part: dict, line: Callable[[str, dict, dict], str]
) -> list[str]:
    """A part measured per scheme and variant: its title, then why it was skipped, or a line
    per variant (`line(name, result, all results of the scheme)`) under each scheme."""
    if "skipped" in part:
        return [title, f"   skipped: {part['skipped']}"]
    lines = [title]
    for scheme, variants in part.items():
        lines.append(f"   {scheme.upper()}")
        lines += [line(name, v, variants) for name, v in variants.items()]
    return lines


def report_token_load(token_load: dict) -> list[str]:
    lines = ["3. Token endpoint: N concurrent cold-start requests → token fetches"]
    for n, t in token_load.items():
        lines.append(f"   N={n:<5} ok {t['ok']:<5} fetches {t['fetches']}")
    return lines


def report_rollover(rollover: dict) -> list[str]:
    lines = ["   Rollover with a token endpoint that takes 1 s (tokens live 4 s)"]
    for label, t in rollover.items():
        lines.append(
            f"   {label:<22} p50 {t['p50_ms']:6.1f} ms  p99 {t['p99_ms']:6.1f} ms  "
            f"max {t['max_ms']:6.1f} ms  waited >0.5 s: {t['waited_over_500_ms']:<3} "
            f"fetches {t['fetches']} in {t['seconds']} s"
        )
    return lines


def report_startup(s: dict) -> list[str]:
    return [
        f"4. Loading 10,000 rules: {s['load_10k_rules_s'] * 1000:.0f} ms; mitmdump start "
        f"{s['mitmdump_start_1_rule_s']:.2f} s (1 rule), "
        f"{s['mitmdump_start_10k_rules_s']:.2f} s (10k rules)",
        f"   Reload of 10k rules under traffic: max latency "
        f"{s['max_latency_before_reload_ms']:.0f} ms before, "
        f"{s['max_latency_during_reload_ms']:.0f} ms during (same rules), "
        f"{s['max_latency_during_full_reload_ms']:.0f} ms during (every rule changed)",
    ]


def report_memory(m: dict) -> list[str]:
    return [
        f"5. Memory: RSS {m['rss_kib'][0][1] / 1024:.1f} MiB after {m['rss_kib'][0][0]} "
        f"requests, {m['rss_kib'][-1][1] / 1024:.1f} MiB after {m['requests']} "
        f"(growth {m['growth_kib']} KiB)"
    ]


REPORTS = {
    "micro": report_micro,
    "side_by_side": report_side_by_side,
    "profile": report_profile,
    "counted": report_counted,
    "token_load": report_token_load,
    "rollover": report_rollover,
    "startup": report_startup,
    "memory": report_memory,
}
SECTIONS = tuple(REPORTS)
SLOW = ("profile", "counted")


if __name__ == "__main__":
    sys.exit(main())
