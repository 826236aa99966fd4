"""What a matching request carries: the header built from a rule and its token.

By default `Authorization: Bearer <token>`; a rule may name another header
(`header_name`) and shape the value (`header_value`, a template with
`{token_type}` and `{access_token}`) for APIs that want, say, `X-Api-Token: <token>`.
"""

from __future__ import annotations

from addon.errors import TokenError
from addon.rules import DEFAULT_HEADER_VALUE, Rule
from addon.token import Token


def scheme_for(rule: Rule, token: Token) -> str:
    """The authentication scheme to send: the rule's `token_type`, else the token's if Bearer.

    RFC 6750 defines how to send Bearer tokens; other types (MAC, DPoP, …)
    need more than a header, so sending them as they are is a mistake unless
    the rule says that it is what the API wants.
    """
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
    scheme = rule.token_type or token.token_type
    redacted = f"[redacted sha256:{token.access_token.fingerprint}]"
    if rule.header_value == DEFAULT_HEADER_VALUE:
        return f"{scheme} {redacted}"
    return rule.header_value.format(token_type=scheme, access_token=redacted)
