"""2b. Where each mitmdump's CPU goes: py-spy samples and the garbage collector's time."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from scripts.benchmarks.common import (
    ADDON,
    ADDONS,
    BIN,
    LOAD,
    LOAD_CORE,
    ROOT,
    Ports,
    Proxy,
    Results,
    measured_variants,
    pinned,
)


def measure(work: Path, ca: Path, ports: Ports, seconds: float) -> Results:
    """Where each mitmdump's CPU goes: the share of its samples in the addon's own code
    (py-spy), and the CPU time of its garbage collections per request.

    Proportions within one process: unlike ratios between processes, they do not move
    with the machine's load. The samples count what the hooks do; the collector's time,
    what their allocations cost later.
    """
    gc_time = ADDONS / "gc_time.py"
    variants = measured_variants(work, ports)
    results: Results = {}
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
            code = script.parent if script == ADDON else script
            young_s = sum(collected["seconds"][:2])
            results[scheme][name] = {
                **(_share(samples[name], code) if code else {}),
                "young_gc_us_per_request": 1e6 * young_s / max(collected["responses"], 1),
                "full_gcs": collected["runs"][2],
                "full_gc_ms_each": 1e3 * collected["seconds"][2] / max(collected["runs"][2], 1),
            }
    return results


def _sample(work: Path, proxies: list[Proxy], url: str, seconds: float) -> dict[str, Path] | None:
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


def _share(samples_file: Path, code: Path) -> Results:
    """Of py-spy's raw samples, the share with a frame in `code` (a file or folder), by the
    outermost such frame. py-spy names files absolutely or relative to the import path; a folder
    may be on that path itself (addon/ is: the editable install's and the -s script's folder),
    so what it holds may be named from there (mitm_oauth/...)."""
    places = [f"({code}", f"({code.relative_to(ROOT)}"]
    if code.is_dir():
        places += [
            f"({child.name}"
            for child in code.iterdir()
            if child.suffix == ".py" or (child / "__init__.py").exists()
        ]
    total, by_hook = 0, dict[str, int]()
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
