"""Token responses (RFC 6749 §5.1, §5.2): what a token endpoint's answer means.

Follows golang.org/x/oauth2's `internal/token.go`: JSON, or form-encoded and
`text/plain` bodies; `expires_in` as a number or a numeric string; the
`token_type` normalised. Unlike it, anything that is not a clean answer is a
`TokenError`, so nothing odd ends up cached.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, TypedDict, cast
from urllib.parse import parse_qsl

from ..errors import TokenError
from ..model import HTTP_TOKEN
from ..secret import Secret

MAX_EXPIRES_IN = 2**31 - 1
"""golang/oauth2 caps `expires_in` here too."""

_KNOWN_TOKEN_TYPES = {"bearer": "Bearer", "mac": "MAC", "basic": "Basic"}
FORM_TYPES = ("application/x-www-form-urlencoded", "text/plain")
"""Media types read as form-encoded fields (golang/oauth2 reads `text/plain` so too)."""
EXCERPT_SOURCE = 4096
"""Bytes of a non-JSON answer read for its excerpt (which the client cuts to 200 characters)."""
MAX_EXTRA_MEMBERS = 10
_STANDARD_MEMBERS = frozenset(
    {"error", "error_description", "error_uri", "access_token", "token_type", "expires_in"}
    | {"scope", "refresh_token", "id_token"}
)
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
"""Visible ASCII: what a token's credentials may contain."""


@dataclass(frozen=True)
class Token:
    access_token: Secret
    token_type: str = "Bearer"
    expires_in: int | None = None
    """Seconds, as the endpoint sent it; None when it sent none (or 0)."""
    scope: str | None = None
    age: float = 0.0
    """Seconds between the token's fetch and now, for a token taken from a shared store: its
    lifetime counts from that fetch, not from when this process got it."""
    source: str = "endpoint"
    """Where this process got it: "endpoint", or "store" (another process fetched it)."""


def parse_token_response(status: int, content_type: str, body: bytes) -> Token:
    """Turn a token endpoint's answer into a `Token`, or raise `TokenError`."""
    kind = media_type(content_type)
    fields = _parse_body(kind, body)
    errors = _error_fields(fields)
    # Only a failure is described further: a 2xx answer may hold a token nobody knows yet.
    details = _details(fields, body) if not 200 <= status < 300 else {}
    if not 200 <= status < 300:
        raise TokenError(
            f"token endpoint answered HTTP {status}", status=status, **errors, **details
        )
    if fields is None:
        described = kind or "no content type"
        raise TokenError(
            f"token endpoint answered HTTP {status} with a body that is not a JSON object "
            f"({described}, {len(body)} bytes)",
            status=status,
            **details,
        )
    if errors.get("error"):
        raise TokenError(
            "token endpoint answered with an error", status=status, **errors, **details
        )

    access_token = fields.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenError("token endpoint response is missing access_token", status=status)
    if not _HEADER_SAFE.fullmatch(access_token):
        raise TokenError(
            "access_token has characters that are not allowed in a header", status=status
        )
    scope = fields.get("scope")
    return Token(
        access_token=Secret(access_token),
        token_type=normalise_token_type(fields.get("token_type"), status),
        expires_in=parse_expires_in(fields.get("expires_in"), status),
        scope=scope if isinstance(scope, str) and scope else None,
    )


def media_type(content_type: str) -> str:
    """`Application/JSON; charset=utf-8` → `application/json`: what the body is, no parameters."""
    return content_type.split(";", 1)[0].strip().lower()


def normalise_token_type(value: object, status: int | None = None) -> str:
    """`bearer` → `Bearer` (likewise MAC, Basic), missing or empty → `Bearer`, others kept."""
    if value is None or value == "":
        return "Bearer"
    if not isinstance(value, str) or not HTTP_TOKEN.fullmatch(value):
        raise TokenError("token_type is not a valid authentication scheme", status=status)
    return _KNOWN_TOKEN_TYPES.get(value.lower(), value)


def parse_expires_in(value: object, status: int | None = None) -> int | None:
    """Seconds until expiry, or None when the endpoint did not say (missing, null, 0, "").

    Accepts integers, finite decimals (rounded down) and numeric strings;
    rejects booleans, NaN, infinities, negatives and anything else, rather
    than guessing a lifetime.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise TokenError("expires_in is a boolean, not a number", status=status)
    number: float
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise TokenError("expires_in is not a number", status=status) from None
    else:
        raise TokenError("expires_in is not a number", status=status)
    if not math.isfinite(number):
        raise TokenError("expires_in is not a finite number", status=status)
    if number < 0:
        raise TokenError("expires_in is negative", status=status)
    seconds = min(int(number), MAX_EXPIRES_IN)
    return seconds or None


def _parse_body(kind: str, body: bytes) -> dict[str, Any] | None:
    """The response's fields, or None when the body is not a map of fields."""
    if kind in FORM_TYPES:
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            return None
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Details(TypedDict, total=False):
    body_excerpt: str
    extra: tuple[tuple[str, str], ...]


def _details(fields: dict[str, Any] | None, body: bytes) -> _Details:
    """What else a failing answer says, for people: the start of a body that is not JSON, or
    the non-standard members of a JSON error. Long, and not yet scrubbed: the token client
    cuts secrets out first and then cuts it short, so no secret is cut in half."""
    if fields is None:
        text = " ".join(body[:EXCERPT_SOURCE].decode("utf-8", "replace").split())
        return {"body_excerpt": text} if text else {}
    extra = [
        (str(name), value if isinstance(value, str) else json.dumps(value, default=str))
        for name, value in fields.items()
        if name not in _STANDARD_MEMBERS
    ]
    return {"extra": tuple(extra[:MAX_EXTRA_MEMBERS])} if extra else {}


class _ErrorFields(TypedDict, total=False):
    error: str
    error_description: str
    error_uri: str


def _error_fields(fields: dict[str, Any] | None) -> _ErrorFields:
    """The RFC 6749 §5.2 error fields the endpoint sent, as strings."""
    if not fields:
        return {}
    sent = {
        key: str(fields[key])
        for key in _ErrorFields.__annotations__
        if fields.get(key) not in (None, "")
    }
    return cast(_ErrorFields, sent)
