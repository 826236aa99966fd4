"""What a matching request carries: the header built from a rule and its token.

By default `Authorization: Bearer <token>`; a rule may name another header
(`header_name`) and shape the value (`header_value`, a template with
`{token_type}` and `{access_token}`) for APIs that want, say, `X-Api-Token: <token>`.
"""

from __future__ import annotations

import time

from .errors import TokenError
from .model import DEFAULT_HEADER_VALUE, Rule
from .oauth.dpop import DPoPKey
from .oauth.response import Token
from .secret import redacted

Fields = tuple[tuple[bytes, bytes], ...]
"""Header fields as the wire has them: (name, value) pairs of bytes."""
DPOP = frozenset({b"dpop"})
REDACTED_PROOF = b"[redacted DPoP proof]"
"""What a flow keeps of a request's proof: replayable while it is fresh, so never kept."""


def scheme_for(rule: Rule, token: Token) -> str:
    """The authentication scheme to send: the rule's `token_type`, else the token's if Bearer.

    RFC 6750 defines how to send Bearer tokens; other types (MAC, DPoP, …)
    need more than a header, so sending them as they are is a mistake unless
    the rule says that it is what the API wants. A DPoP rule sends `DPoP`, with
    the proof the injector adds to each request.
    """
    if rule.credentials.dpop is not None:
        return "DPoP"  # the token client has checked that the endpoint issued one
    if rule.token_type is not None:
        return rule.token_type
    if token.token_type != "Bearer":
        raise TokenError(
            f"the token endpoint issued a {token.token_type!r} token, not a Bearer token; "
            "set token_type in the rule to send it anyway"
        )
    return token.token_type


def header_value(rule: Rule, token: Token) -> str:
    """The value of the rule's header. It reveals the token: for the wire only."""
    scheme = scheme_for(rule, token)
    if rule.header_value == DEFAULT_HEADER_VALUE:
        return f"{scheme} {token.access_token.reveal()}"  # the common case, without format()
    return rule.header_value.format(token_type=scheme, access_token=token.access_token.reveal())


def redacted_header_value(rule: Rule, token: Token) -> str:
    """What flows keep once the request has been sent: the token's fingerprint in its place."""
    scheme = scheme_for(rule, token)
    mark = redacted(token.access_token.fingerprint)
    if rule.header_value == DEFAULT_HEADER_VALUE:
        return f"{scheme} {mark}"
    return rule.header_value.format(token_type=scheme, access_token=mark)


class Injection:
    """What every request matched by `rule` gets while `token` is current, built once.

    Thousands of requests share one token, so everything per request that
    depends only on the pair (header bytes, their redacted form, what to tell
    the operator) is computed here once, not per request. Raises TokenError
    if the token may not be sent as the rule says. Its repr shows the token's
    fingerprint only.
    """

    __slots__ = (
        "comment",
        "dpop_key",
        "fields",
        "metadata",
        "redacted",
        "replaced",
        "rule",
        "token",
        "token_field",
    )

    def __init__(
        self,
        rule: Rule,
        token: Token,
        usable_until: float | None,
        dpop_key: DPoPKey | None = None,
    ) -> None:
        """`usable_until`: wall-clock time (epoch seconds) until which the token is handed out;
        `dpop_key`: for a DPoP rule, the key its requests' proofs are signed with."""
        name = rule.header_name.encode()
        fields = [(name, header_value(rule, token).encode("utf-8", "surrogateescape"))]
        if rule.accept is not None:
            fields.append((b"Accept", rule.accept.encode()))
        self.rule = rule
        self.token = token
        self.dpop_key = dpop_key
        proven = rule.credentials.dpop is not None
        self.replaced = frozenset(n.lower() for n, _ in fields) | (DPOP if proven else set())
        """The names of the fields this injection replaces, lower-case (a client's own DPoP
        proof too, for a DPoP rule: each request gets the proxy's)."""
        self.fields: Fields = tuple(fields)
        self.token_field = frozenset({name.lower()}) | (DPOP if proven else set())
        redacted_fields = [(name, redacted_header_value(rule, token).encode())]
        if proven:
            redacted_fields.append((b"DPoP", REDACTED_PROOF))
        self.redacted: Fields = tuple(redacted_fields)
        """What replaces the token's field (and a DPoP proof) once the request has been sent."""
        fingerprint = token.access_token.fingerprint
        until = ""
        if usable_until is not None:
            until = f", usable until {time.strftime('%H:%M:%S', time.localtime(usable_until))}"
        self.metadata: dict[str, object] = {
            "action": "injected",
            "rule": rule.name,
            "token": fingerprint,
            "token_type": scheme_for(rule, token),
            "usable_until": None if usable_until is None else round(usable_until),
        }
        bound = ""
        if proven:
            jkt = None if dpop_key is None else dpop_key.thumbprint
            self.metadata["dpop_jkt"] = jkt
            bound = f", DPoP-bound to key {jkt}"
        self.comment = f"rule {rule.name}: token sha256:{fingerprint}{until}{bound}"

    def __repr__(self) -> str:
        fingerprint = self.token.access_token.fingerprint
        return f"Injection(rule={self.rule.name!r}, token=sha256:{fingerprint})"


def replace_fields(fields: Fields, names: frozenset[bytes], new: Fields) -> Fields:
    """`fields` without any field named in `names` (lower-case), then `new`: one pass."""
    return tuple([f for f in fields if f[0].lower() not in names]) + new
