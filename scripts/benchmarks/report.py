"""The results as a table, one part per measurement that ran."""

from __future__ import annotations

from collections.abc import Callable

from scripts.benchmarks.common import Results


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def report(r: Results) -> str:
    """The table, for the parts that ran."""
    lines: list[str] = []
    for name, part in REPORTS.items():
        if name in r:
            lines += part(r[name])
    return "\n".join(lines)


def report_micro(micro: Results) -> list[str]:
    lines = ["1. Hook cost, in-process through mitmproxy's addon manager (median µs per request)"]
    for label, m in micro.items():
        lines.append(
            f"   {label:<12} trivial {m['trivial_us']:5.1f}  ours {m['ours_us']:5.1f}  "
            f"ratio {m['ratio']:.2f}"
        )
    return lines


def report_side_by_side(side_by_side: Results) -> list[str]:
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


def report_profile(profile: Results) -> list[str]:
    def line(name: str, v: Results, variants: Results) -> str:
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


def report_counted(counted: Results) -> list[str]:
    def line(name: str, v: Results, variants: Results) -> str:
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
    title: str, part: Results, line: Callable[[str, Results, Results], str]
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


def report_token_load(token_load: Results) -> list[str]:
    lines = ["3. Token endpoint: N concurrent cold-start requests → token fetches"]
    for n, t in token_load.items():
        lines.append(f"   N={n:<5} ok {t['ok']:<5} fetches {t['fetches']}")
    return lines


def report_rollover(rollover: Results) -> list[str]:
    lines = ["   Rollover with a token endpoint that takes 1 s (tokens live 4 s)"]
    for label, t in rollover.items():
        lines.append(
            f"   {label:<22} p50 {t['p50_ms']:6.1f} ms  p99 {t['p99_ms']:6.1f} ms  "
            f"max {t['max_ms']:6.1f} ms  waited >0.5 s: {t['waited_over_500_ms']:<3} "
            f"fetches {t['fetches']} in {t['seconds']} s"
        )
    return lines


def report_startup(s: Results) -> list[str]:
    return [
        f"4. Loading 10,000 rules: {s['load_10k_rules_s'] * 1000:.0f} ms; mitmdump start "
        f"{s['mitmdump_start_1_rule_s']:.2f} s (1 rule), "
        f"{s['mitmdump_start_10k_rules_s']:.2f} s (10k rules)",
        f"   Reload of 10k rules under traffic: max latency "
        f"{s['max_latency_before_reload_ms']:.0f} ms before, "
        f"{s['max_latency_during_reload_ms']:.0f} ms during (same rules), "
        f"{s['max_latency_during_full_reload_ms']:.0f} ms during (every rule changed)",
    ]


def report_memory(m: Results) -> list[str]:
    return [
        f"5. Memory: RSS {m['rss_kib'][0][1] / 1024:.1f} MiB after {m['rss_kib'][0][0]} "
        f"requests, {m['rss_kib'][-1][1] / 1024:.1f} MiB after {m['requests']} "
        f"(growth {m['growth_kib']} KiB)"
    ]


def report_fleet(f: Results) -> list[str]:
    lines = ["6. Shared tokens (oauth_store)"]
    for kind, sizes in f["cold"].items():
        cells = "  ".join(
            f"N={n}: {c['fetches']} fetch(es) for {c['ok']}/{c['requests']} ok"
            for n, c in sizes.items()
        )
        lines.append(f"   cold bursts, {kind:<7} {cells}")
    for kind, s in f["sustained"].items():
        lines.append(
            f"   sustained, {kind:<7} 4 instances, {s['seconds']:g} s, refresh every 2 s: "
            f"{s['fetches']} fetches ({s['fetches_per_period']:.1f} per period), "
            f"{s['requests']} requests, {s['errors']} errors"
        )
    steady = "  ".join(
        f"{kind} {v['cpu_us']:.0f} µs ({v['vs_memory']:.3f} x memory)"
        for kind, v in f["steady"].items()
    )
    lines.append(f"   steady state, CPU per request side by side: {steady}")
    prefetch = "  ".join(
        f"{label}: {v['first_request_ms']:.0f} ms" for label, v in f["prefetch"].items()
    )
    lines.append(f"   first request, token endpoint taking 200 ms: {prefetch}")
    return lines


def report_dpop(d: Results) -> list[str]:
    rates = "  ".join(f"{alg} {rate:,.0f}/s" for alg, rate in d["proofs_per_second"].items())
    side = d["side_by_side"]
    return [
        f"7. DPoP: proofs signed in-process: {rates}",
        f"   CPU per request side by side: Bearer rule {side['bearer_cpu_us']:.0f} µs, "
        f"DPoP rule {side['dpop_cpu_us']:.0f} µs ({side['dpop_vs_bearer']:.3f} x)",
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
    "fleet": report_fleet,
    "dpop": report_dpop,
}
