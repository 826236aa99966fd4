"""1. The hook's cost in-process, through mitmproxy's addon manager, next to the trivial hook's."""

from __future__ import annotations

import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

from scripts.benchmarks.common import Results, rules_text


def forget_log_handlers(*masters: object) -> None:
    """Take the masters' handlers off the root logger. A test master installs one and leaves it
    there; with its event loop closed, the next record logged (the next context's warnings at
    configure) would raise in it."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "master", None) in masters:
            root.removeHandler(handler)


def measure(rounds: int) -> Results:
    from mitmproxy.hooks import Hook
    from mitmproxy.http import HTTPFlow
    from mitmproxy.master import Master
    from mitmproxy.proxy.layers.http import HttpRequestHeadersHook  # type: ignore[attr-defined]
    from mitmproxy.test import taddons, tflow, tutils

    from mitm_oauth.mitm.addon import ClientCredentials
    from mitm_oauth.model import Credentials
    from mitm_oauth.oauth.response import Token
    from mitm_oauth.secret import Secret
    from scripts.benchmarks.addons.trivial_addon import Trivial

    def flow() -> HTTPFlow:
        f = tflow.tflow()
        f.request = tutils.treq()
        f.request.url = "https://127.0.0.1:8443/v1/items"
        f.client_conn.sni = None
        return f

    async def timed(master: Master, hook: Hook, n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await master.addons.handle_lifecycle(hook)
        return (time.perf_counter() - started) / n * 1e6

    async def side_by_side_calls(rules: Path, n: int = 2000) -> tuple[list[float], list[float]]:
        """Rounds of the trivial hook and ours, alternating, so both see the same machine."""

        async def fetch(creds: Credentials) -> Token:
            return Token(Secret("tok"), "Bearer", 86400)

        ours_addon, trivial_addon = ClientCredentials(fetch=fetch), Trivial()
        ours_flow, trivial_flow = flow(), flow()
        ours_hook, trivial_hook = (
            HttpRequestHeadersHook(ours_flow),
            HttpRequestHeadersHook(trivial_flow),
        )
        with taddons.context(trivial_addon) as trivial_ctx, taddons.context(ours_addon) as tctx:
            try:
                tctx.configure(ours_addon, oauth_rules=str(rules))
                await tctx.master.addons.handle_lifecycle(ours_hook)
                assert ours_flow.request.headers["Authorization"].startswith("Bearer")
                trivial, ours = [], []
                for _ in range(rounds):
                    trivial.append(await timed(trivial_ctx.master, trivial_hook, n))
                    ours.append(await timed(tctx.master, ours_hook, n))
                return trivial, ours
            finally:
                forget_log_handlers(trivial_ctx.master, tctx.master)

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
