"""After the upstream answered: purge a rejected token, replay if the rule says so, and take
the token out of the flow."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from mitmproxy import ctx, http
from mitmproxy.utils import human

from ..errors import TokenError
from ..injection import Injection, replace_fields
from ..oauth.cache import TokenCache
from .injector import Injector
from .replay import MAX_BODY, Replayer, can_replay, upstream_proxy

log = logging.getLogger(__name__)


class Responses:
    """Judges the answers to the requests that got a token.

    A part of the main addon, which calls its hooks: see `ClientCredentials` for why.
    """

    def __init__(self, injector: Injector, cache: TokenCache) -> None:
        self.injector = injector
        self.cache = cache
        self.replayer = Replayer()
        self.redact_flows = True
        """`oauth_redact_flows`, read per response: kept at hand."""

    def configure(self, updated: set[str]) -> None:
        self.replayer.deadline = ctx.options.oauth_replay_timeout
        self.redact_flows = ctx.options.oauth_redact_flows

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Purge a rejected token, and replay if the rule says so (the only awaited case)."""
        if flow.response is None:
            return None
        # Taken out now rather than when the flow dies: the weak map's clean-up would
        # then run inside the garbage collector, once per flow.
        given = self.injector.injections.pop(flow, None)
        if given is None:
            return None
        status = flow.response.status_code
        if given.rule.credentials.dpop is not None and self.keep_nonce(flow):
            # RFC 9449 §9: not a rejected token; the next proof carries the server's nonce.
            if can_replay(flow):
                return self.replay_then_redact(flow, given, same_token=True)
            self.redact(flow, given)
            return None
        if status in given.rule.purge_on_status:
            why = f"upstream answered {status} to {flow.request.method} {flow.request.host}"
            self.cache.purge(given.rule.credentials, given.token, why)
            if given.rule.retry_on_401 and can_replay(flow):
                return self.replay_then_redact(flow, given)
        self.redact(flow, given)
        return None

    def error(self, flow: http.HTTPFlow) -> None:
        given = self.injector.injections.pop(flow, None)
        if given is not None:
            self.redact(flow, given)

    def done(self) -> None:
        """Redact the flows still in flight: they are saved after this (`save_stream_file`)."""
        injections = self.injector.injections
        for flow, given in list(injections.items()):
            self.redact(flow, given)
        injections.clear()

    def keep_nonce(self, flow: http.HTTPFlow) -> bool:
        """Keep the API's newest DPoP nonce from its answer; True when the answer is a 401
        that asks for the nonce (`WWW-Authenticate: DPoP error="use_dpop_nonce"`)."""
        response = flow.response
        assert response is not None
        self.injector.proofs.nonces.update(flow.request.url, response.headers.get("DPoP-Nonce"))
        challenge = response.headers.get("WWW-Authenticate", "")
        return response.status_code == 401 and "use_dpop_nonce" in challenge

    async def replay_then_redact(
        self, flow: http.HTTPFlow, given: Injection, same_token: bool = False
    ) -> None:
        self.redact(flow, await self.replay(flow, given, same_token))

    async def replay(
        self, flow: http.HTTPFlow, given: Injection, same_token: bool = False
    ) -> Injection:
        """Send the request once more, with a new token (or, `same_token`, the same one with a
        proof that carries the server's nonce); keep the first answer if none comes.

        Returns what the request carries now: the new token's injection, or `given`.
        """
        rule = given.rule
        renewed = given
        try:
            if not same_token:
                lease = await self.cache.get(rule.credentials)
                if lease.token is given.token:
                    return given  # the purge was rate-limited: it would be refused again
                renewed = self.injector.injection(rule, lease)
        except TokenError as e:
            log.warning("rule %s: no new token to replay the request with: %s", rule.name, e)
            return given
        try:
            proof = None
            if rule.credentials.dpop is not None:
                proof = self.injector.sign(flow.request, renewed).encode()
            self.replayer.max_body = replay_limit()
            flow.response = await self.replayer.replay(
                flow.request,
                renewed,
                verify=not ctx.options.ssl_insecure,
                ca_file=ctx.options.ssl_verify_upstream_trusted_ca,
                proxy=upstream_proxy(flow.client_conn.proxy_mode),
                proxy_auth=ctx.options.upstream_auth,
                proof=proof,
            )
        except Exception as e:  # keep the first answer, and say why
            log.warning("rule %s: replay failed (%s); keeping the first answer", rule.name, e)
            return given
        what = "the server's DPoP nonce" if same_token else "a new token"
        log.info("rule %s: replayed %s with %s", rule.name, flow.request.method, what)
        if rule.credentials.dpop is not None:
            self.keep_nonce(flow)
        return renewed

    def redact(self, flow: http.HTTPFlow, given: Injection) -> None:
        """Leave a fingerprint where the token was, once it has been sent."""
        if self.redact_flows:
            headers = flow.request.headers
            headers.fields = replace_fields(headers.fields, given.token_field, given.redacted)


def replay_limit() -> int:
    """The most a replay holds: mitmproxy's own limits on what it holds, if lower."""
    limits = [MAX_BODY]
    for option in ("body_size_limit", "stream_large_bodies"):
        if option in ctx.options and (size := human.parse_size(getattr(ctx.options, option))):
            limits.append(size)
    return min(limits)
