"""What a refused request and its operator are told: the status, the JSON body, the flow's
comment, a count per rule. `Refusals` then delivers the answer in the upstream's place."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping

from mitmproxy import http

from ..access import client_address
from ..errors import TokenError
from ..model import Rule
from .annotations import annotate
from .refusals import Refusals

log = logging.getLogger(__name__)


class Refuser:
    """Refuses requests that would otherwise leave without their token, or with a wrong one."""

    def __init__(self, refusals: Refusals) -> None:
        self.refusals = refusals
        self.refused: Counter[str] = Counter()
        """Requests refused per rule: a client not allowed, or no token to give."""

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
        code = details.get("token_endpoint_error")
        because = f"{details['message']} ({code})" if code else details["message"]
        self.answer(flow, 502, body, f"{name}: no token, 502: {because}")

    def answer(
        self, flow: http.HTTPFlow, status: int, body: Mapping[str, object], comment: str
    ) -> None:
        """Refuse `flow` with `status` and `body`, and say so where operators look."""
        annotate(flow, {"action": "refused", **body}, comment)
        flow.marked = ":warning:"
        self.refusals.refuse(flow, status, body)

    def fail_closed(self, flow: http.HTTPFlow) -> None:
        log.exception("unexpected error in the token addon; the request is refused")
        self.refuse(flow, None, {"message": "internal error in the token addon"})
