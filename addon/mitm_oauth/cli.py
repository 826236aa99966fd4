"""The command line, for CI jobs and newcomers: check, explain, import-krakend, schema.

mitm-oauth check rules.yaml            # validate; exit 1 with file/rule/field
mitm-oauth check --fetch rules.yaml    # also fetch one token per credential set
mitm-oauth check --fetch --store sqlite:tokens.db rules.yaml   # from the shared store first
mitm-oauth explain rules.yaml URL      # which rule gives URL its token, and why
mitm-oauth import-krakend krakend.json > rules.yaml
mitm-oauth schema > rules.schema.json
mitm-oauth run --rules rules.yaml -- ./the-job   # the job behind the proxy, its exit status
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import yaml

from .config.krakend import convert
from .config.load import load_rules
from .config.schema import schema_json
from .errors import RulesError, TokenError
from .matching.explain import explain_url
from .matching.index import RuleIndex
from .model import Credentials, Rule, credential_sets
from .oauth.cache import Fetch, TokenCache
from .oauth.client import DEFAULT_TIMEOUT, TokenClient
from .oauth.response import Token
from .observe.exchange import Exchange
from .run import run
from .store.base import StoreError
from .store.opening import describe, shared_fetch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mitm-oauth", description="Rules for the mitmproxy client-credentials addon."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="validate a rules file (and fetch tokens)")
    check.add_argument("rules")
    check.add_argument("--fetch", action="store_true", help="fetch one token per credential set")
    check.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per token exchange"
    )
    check.add_argument(
        "--store",
        metavar="STORE",
        help="with --fetch: take tokens from this oauth_store (sqlite:PATH, redis://…) first",
    )
    explain = commands.add_parser("explain", help="which rule gives a URL its token")
    explain.add_argument("rules")
    explain.add_argument("url")
    explain.add_argument("--method", default="GET")
    krakend = commands.add_parser("import-krakend", help="krakend.json → rules.yaml on stdout")
    krakend.add_argument("krakend_json")
    commands.add_parser("schema", help="print the JSON Schema of rules.yaml")
    runner = commands.add_parser(
        "run", help="run a command behind the proxy: mitm-oauth run [--rules F] -- CMD [ARG...]"
    )
    runner.add_argument("--rules", default="rules.yaml")
    runner.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="a mitmproxy option"
    )
    runner.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD [ARG...]")
    args = parser.parse_args(argv)

    if args.command == "schema":
        sys.stdout.write(schema_json())
        return 0
    if args.command == "import-krakend":
        return import_krakend(args.krakend_json)
    if args.command == "run":
        return run_command(args.rules, args.set, args.cmd)
    try:
        rules = load_rules(args.rules)
    except RulesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.command == "explain":
        explanation = explain_url(RuleIndex(rules), args.url, args.method)
        print(explanation.text)
        return 0 if explanation.rule else 1 if explanation.understood else 2
    sets = len(credential_sets(rules))
    print(f"{args.rules}: {len(rules)} rule(s), {sets} credential set(s): valid")
    if not args.fetch:
        return 0
    return asyncio.run(fetch_all(rules, args.timeout, args.store))


async def fetch_all(rules: list[Rule], seconds_each: float, store_option: str | None) -> int:
    """Fetch one token per credential set (from the store first, if one is given); print a
    redacted line per set; 1 if any failed."""
    answers: dict[Credentials, Exchange] = {}
    client = TokenClient(timeout=seconds_each, observer=lambda c, e: answers.__setitem__(c, e))
    fetch: Fetch = client.fetch
    store = None
    try:
        if store_option:
            try:
                shared = shared_fetch(
                    store_option, client.fetch, TokenCache(client.fetch), token_timeout=seconds_each
                )
            except (ValueError, StoreError) as e:
                print(f"error: {e}", file=sys.stderr)
                return 1
            if shared is not None:
                store = shared.store
                print(await describe(store))
                fetch = shared.fetch
        failures = 0
        for creds, names in credential_sets(rules).items():
            failed, line = await _fetch_one(fetch, creds, names, answers)
            if not failed and creds.dpop is not None:
                line += f", DPoP-bound to key {client.dpop_keys.key(creds).thumbprint}"
            failures += failed
            print(client.redactor.redact(line))
    finally:
        await client.aclose()
        if store is not None:
            await store.close()
    return 1 if failures else 0


async def _fetch_one(
    fetch: Fetch, creds: Credentials, names: tuple[str, ...], answers: dict[Credentials, Exchange]
) -> tuple[bool, str]:
    """Whether the fetch failed, and its line: where the token came from, how long it took."""
    started = time.monotonic()
    token: Token | None = None
    try:
        token = await fetch(creds)
    except TokenError as e:
        outcome = f"FAILED: {e}"
    latency = (time.monotonic() - started) * 1000
    exchange = answers.pop(creds, None)
    status = f"HTTP {exchange.status}" if exchange and exchange.status else "no answer"
    if token is not None:
        scope = f'"{token.scope}"' if token.scope else "(none)"
        outcome = (
            f"ok: token_type {token.token_type}, expires_in "
            f"{token.expires_in if token.expires_in else '(none)'}, scope {scope}, "
            f"sha256:{token.access_token.fingerprint}"
        )
        if token.source == "store":
            status = "from the store"
    return token is None, f"rule {', '.join(names)}: {status} in {latency:.0f} ms: {outcome}"


def run_command(rules: str, options: list[str], command: list[str]) -> int:
    """CMD's exit status; 2 when it cannot start behind the proxy (a bad rules file, say)."""
    command = command[1:] if command[:1] == ["--"] else command
    if not command:
        print("error: give the command to run after --", file=sys.stderr)
        return 2
    try:
        return run(rules, options, command)
    except RulesError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def import_krakend(path: str) -> int:
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
        result = convert(config)
    except (OSError, ValueError) as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 1
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for variable, where in result.secrets.items():
        print(f"note: set {variable} to the secret of {where} in {path}", file=sys.stderr)
    header = (
        "# yaml-language-server: $schema=rules.schema.json\n"
        f"# Converted from {Path(path).name} by mitm-oauth import-krakend.\n"
    )
    sys.stdout.write(header + yaml.safe_dump({"rules": result.rules}, sort_keys=False))
    return 0 if result.rules else 1
