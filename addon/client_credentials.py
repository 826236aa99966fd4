"""mitmproxy glue: `mitmdump -s addon/client_credentials.py --set oauth_rules=rules.yaml`.

Everything that decides something lives in the pure modules beside this one;
this file only turns mitmproxy options into rules and flows into destinations.
"""

from __future__ import annotations

import json
import logging

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from addon.errors import RulesError, TokenError
from addon.matching import Destination, RuleIndex
from addon.rules import Rule, load_rules
from addon.token_cache import DEFAULT_EXPIRY_DELTA, DEFAULT_LIFETIME, TokenCache
from addon.token_client import DEFAULT_TIMEOUT, TokenClient

log = logging.getLogger("addon")

# httpx logs every request at INFO, with its URL; the token exchange is ours to log.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

_MINIMUM_SECONDS = {
    "oauth_expiry_delta": 0,
    "oauth_default_lifetime": 1,
    "oauth_token_timeout": 1,
}


class ClientCredentials:
    def __init__(self) -> None:
        self.rules: RuleIndex | None = None
        """None until a rules file has loaded: then every request is refused."""
        self.started = False
        self.client = TokenClient()
        self.cache = TokenCache(self.client.fetch)

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "oauth_rules", str, "rules.yaml", "Rules file: which requests get which token."
        )
        loader.add_option(
            "oauth_expiry_delta",
            int,
            int(DEFAULT_EXPIRY_DELTA),
            "Seconds before its expiry at which a token is replaced (at most half its lifetime).",
        )
        loader.add_option(
            "oauth_default_lifetime",
            int,
            int(DEFAULT_LIFETIME),
            "Seconds a token is kept when the token endpoint sends no expires_in.",
        )
        loader.add_option(
            "oauth_token_timeout",
            int,
            int(DEFAULT_TIMEOUT),
            "Seconds allowed for a whole token exchange.",
        )

    def configure(self, updated: set[str]) -> None:
        for option, minimum in _MINIMUM_SECONDS.items():
            if option in updated and getattr(ctx.options, option) < minimum:
                raise exceptions.OptionsError(f"{option} must be at least {minimum}")
        self.cache.expiry_delta = ctx.options.oauth_expiry_delta
        self.cache.default_lifetime = ctx.options.oauth_default_lifetime
        self.client.timeout = ctx.options.oauth_token_timeout
        if "oauth_rules" in updated:
            try:
                rules = load_rules(ctx.options.oauth_rules)
            except RulesError as e:
                if self.started:  # a live change: refuse it, the previous rules stay
                    raise exceptions.OptionsError(str(e)) from None
                # At start-up, mitmproxy prints a raised error with a traceback;
                # an error log line stops it just as well, and reads better.
                log.error("%s", e)
                return
            self.rules = RuleIndex(rules)
            self.cache.use(rules)
            log.info("%d rule(s) loaded from %s", len(rules), ctx.options.oauth_rules)

    def running(self) -> None:
        self.started = True

    async def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Inject before the request is sent on, so a streamed body cannot outrun us."""
        if flow.response is not None:
            return
        if self.rules is None:
            refuse(flow, None, {"message": "no valid rules file is loaded"})
            return
        rule = self.rules.match(destination(flow.request))
        if rule is None:
            return
        try:
            token = await self.cache.get(rule.credentials)
        except TokenError as e:
            refuse(flow, rule, e.as_dict())
            return
        except Exception:
            log.exception("rule %s: unexpected error while getting a token", rule.name)
            refuse(flow, rule, {"message": "internal error in the token addon"})
            return
        flow.request.headers["Authorization"] = token.authorization
        if rule.accept is not None:
            flow.request.headers["Accept"] = rule.accept

    async def done(self) -> None:
        await self.client.aclose()


def destination(request: http.Request) -> Destination:
    """The request's real target as mitmproxy will connect to it (not its Host header)."""
    return Destination.of(request.scheme, request.host, request.port, request.path, request.method)


def refuse(flow: http.HTTPFlow, rule: Rule | None, details: dict[str, str | int]) -> None:
    """Answer in place of the upstream: a request never leaves without its token."""
    flow.request.stream = False  # mitmproxy cannot answer a request it is streaming
    body = {"error": "token_unavailable", "rule": rule.name if rule else None, **details}
    flow.response = http.Response.make(502, json.dumps(body), {"Content-Type": "application/json"})


addons = [ClientCredentials()]
