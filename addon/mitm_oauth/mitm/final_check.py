"""The last word on a request that carries a token, after every other addon has had its say.

mitmproxy runs a script's hooks before its own `map_remote`, `map_local`,
`modify_headers` and `stickyauth`, and before scripts loaded later: any of them
may change where a request goes, or its Host header, after the token went on,
and `stickyauth` copies a token to other requests to the same host. This addon
is added at the end of mitmproxy's addon chain, so it sees each request as it
will be sent.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, http

from ..injection import replace_fields
from ..matching.index import AmbiguousRequest
from .destination import destination
from .injector import Injector
from .refuser import Refuser

log = logging.getLogger(__name__)

REWRITING_OPTIONS = ("map_remote", "map_local", "modify_headers", "stickyauth")
"""mitmproxy's options that may change a request after this addon's hooks."""


class FinalCheck:
    """Refuses a request that no longer goes where its token was given for."""

    name = "oauth_final_check"

    def __init__(self, injector: Injector, refuser: Refuser) -> None:
        self.injector = injector
        self.refuser = refuser

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.check(flow)  # a streamed request is sent right after this hook

    def request(self, flow: http.HTTPFlow) -> None:
        if not flow.request.stream:  # a streamed one has been sent already
            self.check(flow)

    def place(self, needed: bool | None = None) -> None:
        """Put this check at the end of mitmproxy's addon chain while something there may
        change a request: map_remote, map_local, modify_headers, stickyauth, a script.
        Without any of these it would only cost two hook calls per request."""
        if needed is None:
            rewrites = any(getattr(ctx.options, name, None) for name in REWRITING_OPTIONS)
            needed = rewrites or len(getattr(ctx.options, "scripts", ())) > 1
        placed = ctx.master.addons.get(self.name)
        if needed and placed is None:
            ctx.master.addons.add(self)
        elif not needed and placed is self:
            ctx.master.addons.remove(self)

    def check(self, flow: http.HTTPFlow) -> None:
        """Refuse a request that, since it got its token, was sent elsewhere by another addon,
        or that carries a token this addon did not give it (stickyauth copies them)."""
        rules = self.injector.rules
        if flow.response is not None or rules is None:
            return
        given = self.injector.injections.get(flow)
        if given is None:
            self.refuse_if_copied(flow)
            return
        try:
            rule = rules.match(destination(flow))
        except AmbiguousRequest:
            rule = None
        if rule is given.rule or (
            rule is not None
            and rule.name == given.rule.name
            and rule.credentials == given.rule.credentials
        ):
            return
        del self.injector.injections[flow]
        headers = flow.request.headers  # the token comes off, whatever oauth_redact_flows says
        headers.fields = replace_fields(headers.fields, given.token_field, given.redacted)
        log.warning("rule %s: a request changed after it got its token: refused", given.rule.name)
        message = (
            f"the request was changed after it got the token of rule {given.rule.name} "
            "(by map_remote, modify_headers or another addon): it no longer goes where "
            "that rule matched"
        )
        self.refuser.refuse(flow, given.rule, {"message": message})

    def refuse_if_copied(self, flow: http.HTTPFlow) -> None:
        given = self.injector.given
        headers = flow.request.headers
        if not any(value in given for _, value in headers.fields):
            return
        headers.fields = tuple(f for f in headers.fields if f[1] not in given)
        log.warning("a request to %s carried a copy of a token: refused", flow.request.host)
        message = (
            "the request carries a token this proxy gave another request, copied by "
            "stickyauth or another addon: tokens only go with the requests their rule matches"
        )
        self.refuser.refuse(flow, None, {"message": message})
