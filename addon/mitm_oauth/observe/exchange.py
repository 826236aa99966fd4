"""A token exchange as an operator may see it: the request and the answer, secrets cut out."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode

from ..oauth.response import FORM_TYPES, media_type
from ..secret import fingerprint, redacted
from .redaction import REDACTED, Redactor

SECRET_PARAMS = frozenset({"client_secret", "client_assertion", "password"})
TOKEN_FIELDS = frozenset({"access_token", "refresh_token", "id_token"})


@dataclass(frozen=True)
class Exchange:
    """One request to a token endpoint and what came back (or what went wrong)."""

    method: str
    url: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    started: float
    """Wall-clock time (time.time())."""
    ended: float
    status: int | None = None
    reason: str = ""
    response_headers: list[tuple[str, str]] = field(default_factory=list)
    response_body: bytes = b""
    error: str | None = None
    """Why there is no answer (timeout, connection refused), if there is none."""


def redact_request_headers(headers: dict[str, str], redactor: Redactor) -> list[tuple[str, str]]:
    """Keep the authentication scheme, cut the credentials and any secret header value."""
    redacted = []
    for name, value in headers.items():
        if name.lower() == "authorization":
            value = f"{value.partition(' ')[0]} {REDACTED}"
        elif name.lower() == "dpop":
            value = without_signature(value)
        redacted.append((name, redactor.redact(value)))
    return redacted


def without_signature(proof: str) -> str:
    """A DPoP proof as an operator reads it: its header and claims decoded, its signature (what
    would let it be replayed) cut."""
    try:
        header, claims, _ = proof.split(".")
        decoded = [
            json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
            for part in (header, claims)
        ]
    except ValueError:
        return REDACTED
    return f"{json.dumps(decoded[0])}.{json.dumps(decoded[1])}.[signature cut]"


def redact_request_body(content_type: str, body: bytes) -> bytes:
    """A form or JSON body with secret parameters (client_secret, client_assertion) cut."""
    text = body.decode("utf-8", "replace")
    if content_type == "application/json":
        document = json.loads(text)
        clean = {k: REDACTED if k in SECRET_PARAMS else v for k, v in document.items()}
        return json.dumps(clean, indent=2).encode()
    pairs = parse_qsl(text, keep_blank_values=True)
    return urlencode(
        [(k, REDACTED if k in SECRET_PARAMS else v) for k, v in pairs], safe="[]"
    ).encode()


def redact_token_response(content_type: str, body: bytes, redactor: Redactor) -> bytes:
    """A token response with its tokens replaced by fingerprints; anything else scrubbed.

    JSON is read as `json.loads` reads bytes (a UTF-8 byte order mark, UTF-16
    and UTF-32 included), as the token parser does, so what it found a token
    in is shown with the token cut out.
    """
    text = body.decode(_json_encoding(body), "replace")
    if media_type(content_type) in FORM_TYPES:
        pairs = parse_qsl(text.removeprefix("\ufeff"), keep_blank_values=True)
        if pairs:
            return urlencode([(k, _fingerprinted(k, v)) for k, v in pairs], safe="[]:").encode()
    else:
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            document = None
        if isinstance(document, dict):
            clean = {k: _fingerprinted(k, v) for k, v in document.items()}
            return redactor.redact(json.dumps(clean, indent=2)).encode()
    return redactor.redact(text).encode()


def _json_encoding(body: bytes) -> str:
    """The encoding `json.loads` would read `body` in; UTF-8 for bodies too short to tell."""
    return json.detect_encoding(body) if body else "utf-8"


def _fingerprinted(key: str, value: object) -> object:
    if key in TOKEN_FIELDS and isinstance(value, str):
        return redacted(fingerprint(value))
    return value
