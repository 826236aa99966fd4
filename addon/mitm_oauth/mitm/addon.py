"""mitmproxy glue: `mitmdump -s addon/client_credentials.py --set oauth_rules=rules.yaml`.

Everything that decides something lives in the pure modules beside this one;
this file maps mitmproxy options onto them and flows onto destinations.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Awaitable
from urllib.parse import urlsplit

import mitmproxy.flow
from mitmproxy import command, connection, ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import server_hooks
from mitmproxy.utils import human

from ..access import client_address
from ..config.file_version import FileVersion, file_version
from ..config.rules import Credentials, Rule, keep_unchanged, load_rules
from ..errors import RulesError, TokenError
from ..injection import Injection, replace_fields
from ..matching.explain import explain_url
from ..matching.hosts import default_port
from ..matching.index import AmbiguousRequest, Destination, RuleIndex
from ..oauth.backoff import Backoff
from ..oauth.cache import (
    DEFAULT_EXPIRY_DELTA,
    DEFAULT_LIFETIME,
    DEFAULT_REFRESH_AHEAD,
    Fetch,
    Lease,
    TokenCache,
)
from ..oauth.client import (
    DEFAULT_TIMEOUT,
    KEPT_AFTER_EXPIRY,
    KEPT_WITHOUT_EXPIRY,
    TokenClient,
)
from ..observe.events import EventLog
from ..observe.exchange import Exchange
from ..observe.redaction import Redactor
from ..observe.status import format_table, status_rows, summary
from .allowed_clients import AllowedClients
from .annotations import METADATA, annotate
from .final_check import FinalCheck
from .refusals import Refusals
from .replay import DEFAULT_DEADLINE, MAX_BODY, Replayer, can_replay, upstream_proxy
from .self_access import SelfAccess

log = logging.getLogger("mitm_oauth")

# httpx logs every request at INFO, with its URL, and httpcore its traffic at
# DEBUG: the token exchange is ours to log.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)

EXCHANGE = "oauth_exchange"
"""Marks the flows that show token exchanges: they are never proxied or matched."""

REWRITING_OPTIONS = ("map_remote", "map_local", "modify_headers", "stickyauth")
"""mitmproxy's options that may change a request after this addon's hooks."""
REMEMBERED_VALUES = 4096
"""Header values (one per rule and token) remembered to recognise copies of tokens."""

RELOAD_INTERVAL = 1.0
"""Seconds between checks of the rules file for changes."""

_MINIMUMS = {
    "oauth_expiry_delta": 0,
    "oauth_default_lifetime": 1,
    "oauth_token_timeout": 1,
    "oauth_refresh_ahead": 1,
    "oauth_backoff_max": 1,
    "oauth_replay_timeout": 1,
}


class ClientCredentials:
    """The one addon mitmproxy calls; its parts get their hooks through it.

    Each object in mitmproxy's addon chain costs a step on every event of
    every request, hook or not: three parts as addons of their own cost 1.1 %
    more instructions per request (counted under callgrind).
    """

    def __init__(self, fetch: Fetch | None = None) -> None:
        """`fetch`: how tokens are fetched; the token endpoints themselves (`TokenClient`)
        unless a test or benchmark gives its own."""
        self.refusals = Refusals()
        """Answers the requests this addon refuses, in place of their upstream."""
        self.clients = AllowedClients()
        """Who may have the requests this addon gives tokens to."""
        self.self_access = SelfAccess(self.refusals)
        """Refuses requests to this mitmproxy itself, before anything else is done with them."""
        self.rules: RuleIndex | None = None
        """None until a rules file has loaded: until then every request is refused."""
        self.started = False
        self.redactor = Redactor()
        self.client = TokenClient(redactor=self.redactor, observer=self.show_exchange)
        self.cache = TokenCache(fetch or self.client.fetch, on_event=self.record)
        self.events: EventLog | None = None
        self.injected: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()
        self.replayer = Replayer()
        self.injections: weakref.WeakKeyDictionary[http.HTTPFlow, Injection] = (
            weakref.WeakKeyDictionary()
        )
        """What each flow in flight was given, so that its response can be judged."""
        self.current: dict[str, Injection] = {}
        """Each rule's injection for its current token, by rule name: shared by its requests."""
        self.redact_flows = True
        self._rules_state: FileVersion | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.final_check = FinalCheck(self.recheck)
        self._closing: asyncio.Task[None] | None = None
        self.given: OrderedDict[bytes, None] = OrderedDict()
        """The header values given to requests lately, tokens in them: to know copies."""

    def load(self, loader: Loader) -> None:
        self.clients.load(loader)
        self.refusals.load(loader)
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
        loader.add_option("oauth_reload", bool, True, "Re-read the rules file when it changes.")
        loader.add_option(
            "oauth_replay_timeout", int, int(DEFAULT_DEADLINE),
            "Seconds allowed for a whole retry_on_401 replay, its answer included.",
        )  # fmt: skip
        loader.add_option(
            "oauth_show_exchanges", str, "auto",
            "Show token exchanges as flows (secrets redacted): on, off, or auto "
            "(on in mitmweb and the console, off in mitmdump).",
            choices=("auto", "on", "off"),
        )  # fmt: skip
        loader.add_option(
            "oauth_log_json", str, "",
            "Append one JSON line per token fetch, failure, purge and rules reload to this file.",
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
        self.replayer.deadline = ctx.options.oauth_replay_timeout
        self.redact_flows = ctx.options.oauth_redact_flows  # read per response: kept at hand
        self.clients.configure(updated)
        if self.started and updated & {*REWRITING_OPTIONS, "scripts"}:
            self.place_final_check()
        if "oauth_log_json" in updated:
            if self.events is not None:
                self.events.close()
            path = ctx.options.oauth_log_json
            try:
                self.events = EventLog(path, self.redactor) if path else None
            except OSError as e:
                raise exceptions.OptionsError(f"oauth_log_json: cannot open {path}: {e}") from None
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
        self.refusals.running()
        self.place_final_check()
        self.redactor.install()
        self._watcher = asyncio.get_running_loop().create_task(self.watch_rules())

    def done(self) -> None:
        """Synchronous: mitmproxy calls `done` from a synchronous context when it reloads the
        script (an async one raised there, and the reloaded script never came back)."""
        # Flows still in flight are saved after this (`save_stream_file`): not with their token.
        for flow, given in list(self.injections.items()):
            self.redact(flow, given)
        self.injections.clear()
        self.place_final_check(needed=False)
        if self._watcher is not None:
            self._watcher.cancel()
        log.info("%s", summary(self.cache.status(), self.injected, self.refused))
        self.redactor.uninstall()
        if self.events is not None:
            self.events.close()
        self.refusals.done()
        loop = asyncio.get_running_loop()
        self._closing = loop.create_task(self.close_clients())

    async def close_clients(self) -> None:
        await self.client.aclose()
        await self.replayer.aclose()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self.self_access.http_connect(flow)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> Awaitable[None]:
        return self.self_access.server_connect(data)

    def load_rules(self) -> None:
        """Read the rules file and swap the new rules in at once; raises RulesError."""
        path = ctx.options.oauth_rules
        self.use_rules(path, file_version(path), read_rules(path, self.rules))

    def use_rules(self, path: str, state: FileVersion | None, index: RuleIndex) -> None:
        self.rules = index
        self.cache.use(index.credential_sets)
        self.current = {}
        self._rules_state = state
        log.info("%d rule(s) loaded from %s", len(index), path)
        if self.events is not None:
            self.record({"event": "reload", "file": path, "rules": [r.name for r in index.rules]})

    async def watch_rules(self) -> None:
        """Reload the rules file when it changes; a broken edit leaves the old rules active.

        The file is read and indexed in a thread, so that traffic goes on while
        a large rules file loads, and the retired rules are freed in one too;
        the swap itself is one assignment.
        """
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            try:
                self.self_access.refresh()
                await self.reload_if_changed()
            except Exception:  # a bug of ours must not end the watching: rules may be removed
                log.exception("rules reload failed; the previous rules stay active")
                self._rules_state = file_version(ctx.options.oauth_rules)  # report it once

    async def reload_if_changed(self) -> None:
        path = ctx.options.oauth_rules
        state = file_version(path)
        if not ctx.options.oauth_reload or state == self._rules_state:
            return
        try:
            index = await asyncio.to_thread(read_rules, path, self.rules)
        except RulesError as e:
            self._rules_state = state  # report each broken edit once
            log.error("%s; the previous rules stay active", e)
            self.record({"event": "reload_failed", "file": e.file, "rule": e.rule,
                         "field": e.field, "message": e.message})  # fmt: skip
            return
        retired = self.rules
        self.use_rules(path, state, index)
        if retired is not None:
            await asyncio.to_thread(retired.dismantle)

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Inject before the request is sent on, so a streamed body cannot outrun us.

        Synchronous while the token is cached, which is nearly always; when it
        must be fetched, returns a coroutine that mitmproxy awaits before it
        sends the request.
        """
        if flow.metadata.get(EXCHANGE):  # shown, never sent: not even on a replay from the UI
            flow.kill()
            return None
        if flow.response is not None or flow.error is not None or self.refusals.diverted(flow):
            return None
        if self.self_access.refuse_if_self(flow):
            return None
        try:
            return self.inject(flow)
        except Exception:  # a bug of ours must not let the request go without its token
            self.fail_closed(flow)
            return None

    def inject(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if self.rules is None:
            self.refuse(flow, None, {"message": "no valid rules file is loaded"})
            return None
        try:
            rule = self.rules.match(destination(flow))
        except AmbiguousRequest as e:
            if e.host is not None and self.rules.covers(e.host):  # else: not ours to judge
                log.info("no token for a request to %s: %s", e.host, e)
                annotate(flow, {"action": "ambiguous", "reason": str(e)}, f"no token: {e}")
            return None
        if rule is None:
            return None
        if rule.client_authorization == "keep" and rule.header_name in flow.request.headers:
            annotate(flow, {"action": "kept", "rule": rule.name},
                     f"rule {rule.name}: the client's own {rule.header_name} is kept")  # fmt: skip
            return None
        if not self.clients.may_use(flow):
            self.refuse_client(flow, rule)
            return None
        lease = self.cache.cached(rule.credentials)
        if lease is None:
            return self.fetch_and_apply(flow, rule)
        self.apply(flow, rule, lease)
        return None

    async def fetch_and_apply(self, flow: http.HTTPFlow, rule: Rule) -> None:
        try:
            self.apply(flow, rule, await self.cache.get(rule.credentials))
        except TokenError as e:
            self.refuse_for(flow, rule, e)
        except Exception:  # as in requestheaders: fail closed
            self.fail_closed(flow)

    def refuse_client(self, flow: http.HTTPFlow, rule: Rule) -> None:
        self.refused[rule.name] += 1
        address = client_address(flow.client_conn.peername)
        message = (
            f"client {address} may not use this proxy's tokens: it is not in "
            "oauth_allowed_clients and did not authenticate to the proxy (proxyauth)"
        )
        log.warning("rule %s: refused a request from %s: not an allowed client", rule.name, address)
        body = {"error": "client_not_allowed", "rule": rule.name, "message": message}
        self.answer(flow, 403, body, f"rule {rule.name}: 403: {message}")

    def refuse_for(self, flow: http.HTTPFlow, rule: Rule, error: TokenError) -> None:
        self.refused[rule.name] += 1
        self.refuse(flow, rule, error.as_dict())

    def refuse(self, flow: http.HTTPFlow, rule: Rule | None, details: dict[str, str | int]) -> None:
        """Answer in place of the upstream: a request never leaves without its token."""
        body = {"error": "token_unavailable", "rule": rule.name if rule else None, **details}
        name = f"rule {rule.name}" if rule else "no rule"
        self.answer(flow, 502, body, f"{name}: no token, 502: {details['message']}")

    def answer(
        self, flow: http.HTTPFlow, status: int, body: dict[str, object], comment: str
    ) -> None:
        """Refuse `flow` with `status` and `body`, and say so where operators look."""
        annotate(flow, {"action": "refused", **body}, comment)
        flow.marked = ":warning:"
        self.refusals.refuse(flow, status, body)

    def fail_closed(self, flow: http.HTTPFlow) -> None:
        log.exception("unexpected error in the token addon; the request is refused")
        self.refuse(flow, None, {"message": "internal error in the token addon"})

    def apply(self, flow: http.HTTPFlow, rule: Rule, lease: Lease) -> None:
        """Put the token on the request, or refuse the request if the token may not be sent."""
        given = self.current.get(rule.name)
        if given is None or given.token is not lease.token or given.rule is not rule:
            try:
                given = self.current[rule.name] = self.injection(rule, lease)
            except TokenError as e:  # not kept: checked again at every use
                self.refuse_for(flow, rule, e)
                return
        headers = flow.request.headers
        headers.fields = replace_fields(headers.fields, given.replaced, given.fields)
        self.injections[flow] = given
        self.injected[rule.name] += 1
        annotate(flow, dict(given.metadata), given.comment)

    def place_final_check(self, needed: bool | None = None) -> None:
        """Put the final check at the end of mitmproxy's addon chain while something there
        may change a request: map_remote, map_local, modify_headers, stickyauth, a script.
        Without any of these it would only cost two hook calls per request."""
        if needed is None:
            rewrites = any(getattr(ctx.options, name, None) for name in REWRITING_OPTIONS)
            needed = rewrites or len(getattr(ctx.options, "scripts", ())) > 1
        placed = ctx.master.addons.get(FinalCheck.name)
        if needed and placed is None:
            ctx.master.addons.add(self.final_check)
        elif not needed and placed is self.final_check:
            ctx.master.addons.remove(self.final_check)

    def recheck(self, flow: http.HTTPFlow) -> None:
        """Refuse a request that, since it got its token, was sent elsewhere by another addon,
        or that carries a token this addon did not give it (stickyauth copies them)."""
        if flow.response is not None or self.rules is None:
            return
        given = self.injections.get(flow)
        if given is None:
            self.refuse_if_copied(flow)
            return
        try:
            rule = self.rules.match(destination(flow))
        except AmbiguousRequest:
            rule = None
        if rule is given.rule or (
            rule is not None
            and rule.name == given.rule.name
            and rule.credentials == given.rule.credentials
        ):
            return
        del self.injections[flow]
        headers = flow.request.headers  # the token comes off, whatever oauth_redact_flows says
        headers.fields = replace_fields(headers.fields, given.token_field, given.redacted)
        log.warning("rule %s: a request changed after it got its token: refused", given.rule.name)
        self.refuse(flow, given.rule, {"message": (
            f"the request was changed after it got the token of rule {given.rule.name} "
            "(by map_remote, modify_headers or another addon): it no longer goes where "
            "that rule matched"
        )})  # fmt: skip

    def refuse_if_copied(self, flow: http.HTTPFlow) -> None:
        headers = flow.request.headers
        if not any(value in self.given for _, value in headers.fields):
            return
        headers.fields = tuple(f for f in headers.fields if f[1] not in self.given)
        log.warning("a request to %s carried a copy of a token: refused", flow.request.host)
        self.refuse(flow, None, {"message": (
            "the request carries a token this proxy gave another request, copied by "
            "stickyauth or another addon: tokens only go with the requests their rule matches"
        )})  # fmt: skip

    def injection(self, rule: Rule, lease: Lease) -> Injection:
        """What `rule`'s requests get with `lease`; raises TokenError if it may not be sent."""
        until = lease.usable_until
        usable_for = None if until is None else until - time.time()
        given = Injection(rule, lease.token, until)
        # The whole header value too: HTTP/2 and HTTP/3 compress it as one string, which
        # proxy_debug then logs as bytes that contain no spelling of the token alone.
        value = given.fields[0][1]
        kept = (usable_for or KEPT_WITHOUT_EXPIRY) + KEPT_AFTER_EXPIRY
        self.redactor.add(value.decode("utf-8", "surrogateescape"), keep_for=kept, header=True)
        self.given[value] = None
        while len(self.given) > REMEMBERED_VALUES:
            self.given.popitem(last=False)
        return given

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Purge a rejected token, and replay if the rule says so (the only awaited case)."""
        self.refusals.restore(flow)
        if flow.response is None:
            return None
        # Taken out now rather than when the flow dies: the weak map's clean-up would
        # then run inside the garbage collector, once per flow.
        given = self.injections.pop(flow, None)
        if given is None:
            return None
        status = flow.response.status_code
        if status in given.rule.purge_on_status:
            self.cache.purge(
                given.rule.credentials, given.token,
                f"upstream answered {status} to {flow.request.method} {flow.request.host}",
            )  # fmt: skip
            if given.rule.retry_on_401 and can_replay(flow):
                return self.replay_then_redact(flow, given)
        self.redact(flow, given)
        return None

    async def replay_then_redact(self, flow: http.HTTPFlow, given: Injection) -> None:
        self.redact(flow, await self.replay(flow, given))

    def error(self, flow: http.HTTPFlow) -> None:
        self.refusals.restore(flow)
        given = self.injections.pop(flow, None)
        if given is not None:
            self.redact(flow, given)

    async def replay(self, flow: http.HTTPFlow, given: Injection) -> Injection:
        """Send the request once more with a new token; keep the first answer if none comes.

        Returns what the request carries now: the new token's injection, or `given`.
        """
        rule = given.rule
        try:
            lease = await self.cache.get(rule.credentials)
        except TokenError as e:
            log.warning("rule %s: no new token to replay the request with: %s", rule.name, e)
            return given
        if lease.token is given.token:
            return given  # the purge was rate-limited: the same token would be refused again
        try:
            renewed = self.injection(rule, lease)
            self.replayer.max_body = replay_limit()
            flow.response = await self.replayer.replay(
                flow.request,
                renewed,
                verify=not ctx.options.ssl_insecure,
                ca_file=ctx.options.ssl_verify_upstream_trusted_ca,
                proxy=upstream_proxy(flow.client_conn.proxy_mode),
                proxy_auth=ctx.options.upstream_auth,
            )
        except Exception as e:  # keep the first answer, and say why
            log.warning("rule %s: replay failed (%s); keeping the first answer", rule.name, e)
            return given
        log.info("rule %s: replayed %s with a new token", rule.name, flow.request.method)
        return renewed

    # -- what operators see --------------------------------------------------------

    def record(self, event: dict[str, object]) -> None:
        if self.events is not None:
            self.events.write(event)

    def show_exchange(self, creds: Credentials, exchange: Exchange) -> None:
        """Put a token exchange in the flow list, where the view (mitmweb, console) exists."""
        setting = ctx.options.oauth_show_exchanges
        view = ctx.master.addons.get("view")  # mitmweb's and the console's flow list
        if setting == "off" or view is None or (setting == "auto" and _is_mitmdump()):
            return
        rules = self.cache.credential_sets().get(creds, ())
        view.add([exchange_flow(exchange, rules)])

    @command.command("oauth.status")
    def status(self) -> str:
        """Each rule's credential set, token state, fingerprint, lifetime left and counters."""
        return format_table(status_rows(self.cache.status(), self.injected))

    @command.command("oauth.refresh")
    def refresh(self, rule: str = "") -> str:
        """Fetch new tokens now: for one rule's credential set, or for all."""
        sets = self.cache.credential_sets()
        chosen = [c for c, names in sets.items() if not rule or rule in names]
        if not chosen:
            raise exceptions.CommandError(f"no rule named {rule!r}")
        started = sum(self.cache.refresh(c) for c in chosen)
        return f"refreshing {started} credential set(s)"

    @command.command("oauth.flush")
    def flush(self) -> str:
        """Drop every cached token: the next request for each fetches a new one."""
        return f"dropped {self.cache.flush()} token(s)"

    @command.command("oauth.explain")
    def explain(self, url: str, method: str = "GET") -> str:
        """Which rule gives URL its token, and why each other rule does not."""
        if self.rules is None:
            return "no valid rules file is loaded"
        return explain_url(self.rules, url, method)

    def redact(self, flow: http.HTTPFlow, given: Injection) -> None:
        """Leave a fingerprint where the token was, once it has been sent."""
        if self.redact_flows:
            headers = flow.request.headers
            headers.fields = replace_fields(headers.fields, given.token_field, given.redacted)


def destination(flow: http.HTTPFlow) -> Destination:
    """The request's real target as mitmproxy will connect to it.

    The Host header, the request line's or HTTP/2's authority and TLS SNI
    must agree with it, or the request is ambiguous (`AmbiguousRequest`).
    """
    request = flow.request
    data = request.data
    hosts = tuple([value for name, value in data.headers.fields if name.lower() == b"host"])
    # The authority is the request line's in HTTP/1 (absolute-form; mitmproxy
    # empties it once it has taken the destination from it) or HTTP/2's `:authority`.
    return _destination(
        data.scheme, data.host, data.port, data.path, data.method, hosts, data.authority,
        flow.client_conn.sni,
    )  # fmt: skip


@functools.lru_cache(maxsize=4096)
def _destination(
    scheme: bytes,
    host: str,
    port: int,
    path: bytes,
    method: bytes,
    hosts: tuple[bytes, ...],
    authority: bytes,
    sni: str | None,
) -> Destination:
    """`destination` from the request's raw parts: most requests repeat an earlier one's."""
    names = [name.decode("utf-8", "surrogateescape") for name in hosts]
    if authority:
        names.append(authority.decode("utf-8", "surrogateescape"))
    if sni:
        names.append(sni)
    dest = Destination.of(
        scheme.decode("utf-8", "surrogateescape"), host, port,
        path.decode("utf-8", "surrogateescape"), method.decode("utf-8", "surrogateescape"),
        other_names=names,
    )  # fmt: skip
    if len(hosts) > 1:  # servers and front ends disagree on which one counts
        raise AmbiguousRequest("the request has more than one Host header", dest.host)
    return dest


def replay_limit() -> int:
    """The most a replay holds: mitmproxy's own limits on what it holds, if lower."""
    limits = [MAX_BODY]
    for option in ("body_size_limit", "stream_large_bodies"):
        if option in ctx.options and (size := human.parse_size(getattr(ctx.options, option))):
            limits.append(size)
    return min(limits)


def read_rules(path: str, previous: RuleIndex | None = None) -> RuleIndex:
    """The rules of a file, indexed, unchanged ones taken from `previous`; raises RulesError."""
    rules = load_rules(path)
    return RuleIndex(rules if previous is None else keep_unchanged(rules, previous.rules))


def exchange_flow(exchange: Exchange, rules: tuple[str, ...]) -> http.HTTPFlow:
    """A flow that shows a token exchange; it is never sent anywhere."""
    parts = urlsplit(exchange.url)
    port = parts.port or default_port(parts.scheme)
    client = connection.Client(peername=("127.0.0.1", 0), sockname=("127.0.0.1", 0),
                               timestamp_start=exchange.started)  # fmt: skip
    server = connection.Server(address=(parts.hostname or "", port))
    flow = http.HTTPFlow(client, server)
    flow.request = http.Request(
        host=parts.hostname or "", port=port, method=b"POST", scheme=parts.scheme.encode(),
        authority=b"", path=(parts.path or "/").encode() + (b"?" + parts.query.encode()
                                                              if parts.query else b""),
        http_version=b"HTTP/1.1", headers=http.Headers(_encoded(exchange.request_headers)),
        content=exchange.request_body, trailers=None,
        timestamp_start=exchange.started, timestamp_end=exchange.started,
    )  # fmt: skip
    if exchange.status is not None:
        flow.response = http.Response(
            http_version=b"HTTP/1.1", status_code=exchange.status,
            reason=exchange.reason.encode(), headers=http.Headers(
                _encoded(exchange.response_headers)),
            content=exchange.response_body, trailers=None,
            timestamp_start=exchange.ended, timestamp_end=exchange.ended,
        )  # fmt: skip
    else:
        flow.error = mitmproxy.flow.Error(exchange.error or "no answer", exchange.ended)
    flow.metadata[EXCHANGE] = True
    flow.metadata[METADATA] = {"action": "token_exchange", "rules": list(rules),
                               "status": exchange.status, "error": exchange.error}  # fmt: skip
    answer = f"HTTP {exchange.status}" if exchange.status is not None else exchange.error
    flow.comment = f"oauth: token exchange for rule {', '.join(rules) or '?'}: {answer}"
    flow.marked = ":key:"
    return flow


def _encoded(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode("utf-8", "replace")) for k, v in headers]


def _is_mitmdump() -> bool:
    return type(ctx.master).__name__ == "DumpMaster"
