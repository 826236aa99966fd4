"""mitmproxy glue: `mitmdump -s addon/client_credentials.py --set oauth_rules=rules.yaml`.

Everything that decides something lives in the pure modules beside this one;
this file maps mitmproxy options onto them and flows onto destinations.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import weakref
from typing import NamedTuple

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from addon import injection
from addon.backoff import Backoff
from addon.errors import RulesError, TokenError
from addon.matching import AmbiguousRequest, Destination, RuleIndex
from addon.redaction import Redactor
from addon.replay import Replayer, can_replay
from addon.rules import Rule, load_rules
from addon.token import Token
from addon.token_cache import (
    DEFAULT_EXPIRY_DELTA,
    DEFAULT_LIFETIME,
    DEFAULT_REFRESH_AHEAD,
    TokenCache,
)
from addon.token_client import DEFAULT_TIMEOUT, TokenClient

log = logging.getLogger("addon")

# httpx logs every request at INFO, with its URL, and httpcore its traffic at
# DEBUG: the token exchange is ours to log.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

RELOAD_INTERVAL = 1.0
"""Seconds between checks of the rules file for changes."""

_MINIMUMS = {
    "oauth_expiry_delta": 0,
    "oauth_default_lifetime": 1,
    "oauth_token_timeout": 1,
    "oauth_refresh_ahead": 1,
    "oauth_backoff_max": 1,
}


class Injection(NamedTuple):
    """What a flow was given, so the response can be judged against it.

    (Not a dataclass: mitmproxy runs this file as a script, outside sys.modules,
    where dataclasses cannot resolve their annotations.)
    """

    rule: Rule
    token: Token


class ClientCredentials:
    def __init__(self) -> None:
        self.rules: RuleIndex | None = None
        """None until a rules file has loaded: until then every request is refused."""
        self.started = False
        self.redactor = Redactor()
        self.client = TokenClient(redactor=self.redactor)
        self.cache = TokenCache(self.client.fetch)
        self.replayer = Replayer()
        self.injections: weakref.WeakKeyDictionary[http.HTTPFlow, Injection] = (
            weakref.WeakKeyDictionary()
        )
        self._rules_state: tuple[int, int, int] | None = None
        self._watcher: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "oauth_rules", str, "rules.yaml", "Rules file: which requests get which token."
        )
        loader.add_option(
            "oauth_expiry_delta", int, int(DEFAULT_EXPIRY_DELTA),
            "Seconds before its expiry at which a token is no longer used "
            "(at most half its lifetime).",
        )  # fmt: skip
        loader.add_option(
            "oauth_default_lifetime", int, int(DEFAULT_LIFETIME),
            "Seconds a token is kept when the token endpoint sends no expires_in.",
        )  # fmt: skip
        loader.add_option(
            "oauth_token_timeout", int, int(DEFAULT_TIMEOUT),
            "Seconds allowed for a whole token exchange.",
        )  # fmt: skip
        loader.add_option(
            "oauth_refresh_ahead", int, int(DEFAULT_REFRESH_AHEAD * 100),
            "Percent of a token's lifetime after which it is refreshed in the background "
            "(100: only when it expires).",
        )  # fmt: skip
        loader.add_option(
            "oauth_backoff_max", int, int(Backoff.maximum),
            "Longest wait, in seconds, between attempts at a failing token endpoint.",
        )  # fmt: skip
        loader.add_option(
            "oauth_reload", bool, True, "Re-read the rules file when it changes."
        )  # fmt: skip
        loader.add_option(
            "oauth_redact_flows", bool, True,
            "Once a request has been sent, replace its token in the flow with a fingerprint, "
            "so that saved and displayed flows hold no token.",
        )  # fmt: skip

    def configure(self, updated: set[str]) -> None:
        for option, minimum in _MINIMUMS.items():
            if option in updated and getattr(ctx.options, option) < minimum:
                raise exceptions.OptionsError(f"{option} must be at least {minimum}")
        if ctx.options.oauth_refresh_ahead > 100:
            raise exceptions.OptionsError("oauth_refresh_ahead is a percentage: at most 100")
        self.cache.expiry_delta = ctx.options.oauth_expiry_delta
        self.cache.default_lifetime = ctx.options.oauth_default_lifetime
        self.cache.refresh_ahead = ctx.options.oauth_refresh_ahead / 100
        self.cache.backoff = Backoff(maximum=ctx.options.oauth_backoff_max)
        self.client.timeout = ctx.options.oauth_token_timeout
        if "oauth_rules" in updated:
            try:
                self.load_rules()
            except RulesError as e:
                if self.started:  # a live change: refuse it, the previous rules stay
                    raise exceptions.OptionsError(str(e)) from None
                # At start-up, mitmproxy prints a raised error with a traceback;
                # an error log line stops it just as well, and reads better.
                log.error("%s", e)

    def running(self) -> None:
        self.started = True
        self.redactor.install()
        self._watcher = asyncio.get_running_loop().create_task(self.watch_rules())

    async def done(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        self.redactor.uninstall()
        await self.client.aclose()
        await self.replayer.aclose()

    def load_rules(self) -> None:
        """Read the rules file and swap the new rules in at once; raises RulesError."""
        path = ctx.options.oauth_rules
        state = _file_state(path)
        rules = load_rules(path)
        self.rules = RuleIndex(rules)
        self.cache.use(rules)
        self._rules_state = state
        log.info("%d rule(s) loaded from %s", len(rules), path)

    async def watch_rules(self) -> None:
        """Reload the rules file when it changes; a broken edit leaves the old rules active."""
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            state = _file_state(ctx.options.oauth_rules)
            if not ctx.options.oauth_reload or state == self._rules_state:
                continue
            try:
                self.load_rules()
            except RulesError as e:
                self._rules_state = state  # report each broken edit once
                log.error("%s; the previous rules stay active", e)

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Inject before the request is sent on, so a streamed body cannot outrun us."""
        if flow.response is not None:
            return
        if self.rules is None:
            refuse(flow, None, {"message": "no valid rules file is loaded"})
            return
        try:
            rule = self.rules.match(destination(flow))
        except AmbiguousRequest as e:
            log.info("no token for a request to %s: %s", flow.request.host, e)
            return
        if rule is None:
            return
        if rule.client_authorization == "keep" and "Authorization" in flow.request.headers:
            return
        try:
            token = await self.cache.get(rule.credentials)
            value = injection.authorization(rule, token)
        except TokenError as e:
            refuse(flow, rule, e.as_dict())
            return
        except Exception:
            log.exception("rule %s: unexpected error while getting a token", rule.name)
            refuse(flow, rule, {"message": "internal error in the token addon"})
            return
        flow.request.headers["Authorization"] = value
        if rule.accept is not None:
            flow.request.headers["Accept"] = rule.accept
        self.injections[flow] = Injection(rule, token)

    async def response(self, flow: http.HTTPFlow) -> None:
        given = self.injections.get(flow)
        if given is None or flow.response is None:
            return
        status = flow.response.status_code
        if status in given.rule.purge_on_status:
            self.cache.purge(
                given.rule.credentials, given.token,
                f"upstream answered {status} to {flow.request.method} {flow.request.host}",
            )  # fmt: skip
            if given.rule.retry_on_401 and can_replay(flow):
                await self.replay(flow, given)
        self.redact(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.redact(flow)

    async def replay(self, flow: http.HTTPFlow, given: Injection) -> None:
        """Send the request once more with a new token; keep the first answer if none comes."""
        rule = given.rule
        try:
            token = await self.cache.get(rule.credentials)
        except TokenError as e:
            log.warning("rule %s: no new token to replay the request with: %s", rule.name, e)
            return
        if token is given.token:
            return  # the purge was rate-limited: the same token would be refused again
        try:
            flow.response = await self.replayer.replay(
                flow.request,
                injection.authorization(rule, token),
                verify=not ctx.options.ssl_insecure,
                ca_file=ctx.options.ssl_verify_upstream_trusted_ca,
            )
        except Exception as e:  # keep the first answer, and say why
            log.warning("rule %s: replay failed (%s); keeping the first answer", rule.name, e)
            return
        self.injections[flow] = Injection(rule, token)
        log.info("rule %s: replayed %s with a new token", rule.name, flow.request.method)

    def redact(self, flow: http.HTTPFlow) -> None:
        """Leave a fingerprint where the token was, once it has been sent."""
        given = self.injections.get(flow)
        if given is not None and ctx.options.oauth_redact_flows:
            redacted = injection.redacted_authorization(given.rule, given.token)
            flow.request.headers["Authorization"] = redacted


def destination(flow: http.HTTPFlow) -> Destination:
    """The request's real target as mitmproxy will connect to it.

    Host headers, HTTP/2 `:authority` and TLS SNI must agree with it, or the
    request is ambiguous (`AmbiguousRequest`).
    """
    request = flow.request
    names = request.headers.get_all("Host")
    if request.authority:
        names.append(request.authority)
    if flow.client_conn.sni:
        names.append(flow.client_conn.sni)
    return Destination.of(
        request.scheme, request.host, request.port, request.path, request.method,
        other_names=names,
    )  # fmt: skip


def refuse(flow: http.HTTPFlow, rule: Rule | None, details: dict[str, str | int]) -> None:
    """Answer in place of the upstream: a request never leaves without its token."""
    flow.request.stream = False  # mitmproxy cannot answer a request it is streaming
    body = {"error": "token_unavailable", "rule": rule.name if rule else None, **details}
    flow.response = http.Response.make(502, json.dumps(body), {"Content-Type": "application/json"})


def _file_state(path: str) -> tuple[int, int, int] | None:
    """What changes when a file is edited or replaced: modification time, size, inode."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


addons = [ClientCredentials()]
