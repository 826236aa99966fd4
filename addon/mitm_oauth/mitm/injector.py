"""Putting a rule's token on each request it matches: the per-request path."""

from __future__ import annotations

import logging
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Awaitable

from mitmproxy import http

from ..errors import TokenError
from ..injection import Injection, replace_fields
from ..matching.index import AmbiguousRequest, RuleIndex
from ..model import Rule
from ..oauth.cache import Lease, TokenCache
from ..oauth.client import KEPT_AFTER_EXPIRY, KEPT_WITHOUT_EXPIRY
from ..oauth.dpop import RequestProofs
from ..observe.redaction import Redactor
from .allowed_clients import AllowedClients
from .annotations import annotate
from .destination import destination
from .refuser import Refuser

log = logging.getLogger(__name__)

REMEMBERED_VALUES = 4096
"""Header values (one per rule and token) remembered to recognise copies of tokens."""


class Injector:
    """Matches a request to its rule and gives it that rule's token, or refuses it.

    Synchronous while the token is cached, which is nearly always. What a
    rule's requests get with a token is built once (`Injection`) and shared.
    """

    def __init__(
        self,
        cache: TokenCache,
        redactor: Redactor,
        clients: AllowedClients,
        refuser: Refuser,
        proofs: RequestProofs,
    ) -> None:
        self.cache = cache
        self.proofs = proofs
        """Signs the DPoP proof each request of a DPoP rule carries."""
        self.redactor = redactor
        self.clients = clients
        self.refuser = refuser
        self.rules: RuleIndex | None = None
        """None until a rules file has loaded: until then every request is refused."""
        self.current: dict[str, Injection] = {}
        """Each rule's injection for its current token, by rule name: shared by its requests."""
        self.injections: weakref.WeakKeyDictionary[http.HTTPFlow, Injection] = (
            weakref.WeakKeyDictionary()
        )
        """What each flow in flight was given, so that its response can be judged."""
        self.given: OrderedDict[bytes, None] = OrderedDict()
        """The header values given to requests lately, tokens in them: to know copies."""
        self.injected: Counter[str] = Counter()

    def use(self, index: RuleIndex) -> None:
        """New rules: injections are built afresh, as a rule of the same name may differ."""
        self.rules = index
        self.current = {}

    def inject(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Give `flow` its token; a coroutine to await when the token must be fetched first."""
        if self.rules is None:
            self.refuser.refuse(flow, None, {"message": "no valid rules file is loaded"})
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
            comment = f"rule {rule.name}: the client's own {rule.header_name} is kept"
            annotate(flow, {"action": "kept", "rule": rule.name}, comment)
            return None
        if not self.clients.may_use(flow):
            self.refuser.refuse_client(flow, rule)
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
            self.refuser.refuse_for(flow, rule, e)
        except Exception:  # as in the main addon's requestheaders: fail closed
            self.refuser.fail_closed(flow)

    def apply(self, flow: http.HTTPFlow, rule: Rule, lease: Lease) -> None:
        """Put the token on the request, or refuse the request if the token may not be sent."""
        given = self.current.get(rule.name)
        if given is None or given.token is not lease.token or given.rule is not rule:
            try:
                given = self.current[rule.name] = self.injection(rule, lease)
            except TokenError as e:  # not kept: checked again at every use
                self.refuser.refuse_for(flow, rule, e)
                return
        fields = given.fields
        if given.dpop_key is not None:
            fields += ((b"DPoP", self.sign(flow.request, given).encode()),)
        headers = flow.request.headers
        headers.fields = replace_fields(headers.fields, given.replaced, fields)
        self.injections[flow] = given
        self.injected[rule.name] += 1
        annotate(flow, dict(given.metadata), given.comment)

    def sign(self, request: http.Request, given: Injection) -> str:
        """A fresh DPoP proof for `request` and the token it carries (RFC 9449 §7)."""
        assert given.dpop_key is not None
        token = given.token.access_token.reveal()
        return self.proofs.proof(given.dpop_key, request.method, request.url, token)

    def injection(self, rule: Rule, lease: Lease) -> Injection:
        """What `rule`'s requests get with `lease`; raises TokenError if it may not be sent.

        A DPoP rule's key is taken here, once per token, rather than per request: its
        proofs need no file check on the way, and stay signed by one key for the token.
        """
        until = lease.usable_until
        key = None
        if rule.credentials.dpop is not None:
            try:
                key = self.proofs.keys.key(rule.credentials)
            except ValueError as e:
                raise TokenError(f"cannot sign DPoP proofs: {e}") from None
        given = Injection(rule, lease.token, until, key)
        # The whole header value too: HTTP/2 and HTTP/3 compress it as one string, which
        # proxy_debug then logs as bytes that contain no spelling of the token alone.
        value = given.fields[0][1]
        kept = (KEPT_WITHOUT_EXPIRY if until is None else until - time.time()) + KEPT_AFTER_EXPIRY
        self.redactor.add(value.decode("utf-8", "surrogateescape"), keep_for=kept, header=True)
        self.given[value] = None
        while len(self.given) > REMEMBERED_VALUES:
            self.given.popitem(last=False)
        return given
