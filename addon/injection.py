"""What a matching request carries: the header value built from a rule and its token."""

from __future__ import annotations

from addon.errors import TokenError
from addon.rules import Rule
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


def authorization(rule: Rule, token: Token) -> str:
    """The `Authorization` value. It reveals the token: for the wire only."""
    return f"{scheme_for(rule, token)} {token.access_token.reveal()}"


def redacted_authorization(rule: Rule, token: Token) -> str:
    """What flows keep once the request has been sent: the scheme and a fingerprint."""
    scheme = rule.token_type or token.token_type
    return f"{scheme} [redacted sha256:{token.access_token.fingerprint}]"
