"""One token request (RFC 6749 §4.4): its headers and body, the client authenticated in it.

How the client proves who it is depends on the auth style (`model.AuthStyle`): HTTP
Basic, the body, a signed assertion in the body (RFC 7523 §2.2), or the TLS client
certificate shown by the connection, the body naming the client (RFC 8705 §2).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote_plus, urlencode

from ..errors import TokenError
from ..model import AuthStyle, Credentials
from . import assertion

_ASSERTION_PARAMS = frozenset({"client_id", "client_assertion", "client_assertion_type"})
_OWN_PARAMS = {
    AuthStyle.HEADER: frozenset(),
    AuthStyle.PARAMS: frozenset({"client_id", "client_secret"}),
    AuthStyle.CLIENT_SECRET_JWT: _ASSERTION_PARAMS,
    AuthStyle.PRIVATE_KEY_JWT: _ASSERTION_PARAMS,
    AuthStyle.TLS_CLIENT_AUTH: frozenset({"client_id"}),
    AuthStyle.SELF_SIGNED_TLS_CLIENT_AUTH: frozenset({"client_id"}),
}
"""Parameters each style sets itself: the same names from `endpoint_params` give way,
as golang/oauth2's `url.Values.Set` makes them."""


@dataclass(frozen=True, repr=False)
class ClientAuth:
    """A credential set's id and secret, read once per fetch (files may have rotated)."""

    client_id: str
    client_secret: str | None

    @classmethod
    def of(cls, creds: Credentials) -> ClientAuth:
        try:
            secret = creds.client_secret.reveal() if creds.client_secret is not None else None
            return cls(creds.client_id.reveal(), secret)
        except ValueError as e:  # a *_file that is missing, unreadable or empty
            raise TokenError(
                f"client credentials unavailable: {e}", error="invalid_client"
            ) from None

    def __repr__(self) -> str:
        return "ClientAuth(…)"

    def secret(self) -> str:
        """The client secret, for the styles that the rules loader makes give one."""
        assert self.client_secret is not None, "a style that sends the secret needs one"
        return self.client_secret

    def secrets(self) -> tuple[str, ...]:
        """The secret, and the id:secret pair as HTTP Basic encodes it."""
        if self.client_secret is None:
            return ()
        return self.client_secret, _basic_pair(self.client_id, self.client_secret)


@dataclass(frozen=True, repr=False)
class TokenRequest:
    headers: dict[str, str]
    body: bytes
    secrets: tuple[str, ...]
    """What the request carries that must never be shown: assertions, header values."""


def basic_credentials(client_id: str, client_secret: str) -> str:
    """HTTP Basic with id and secret form-urlencoded first (RFC 6749 §2.3.1)."""
    encoded = base64.b64encode(_basic_pair(client_id, client_secret).encode()).decode("ascii")
    return f"Basic {encoded}"


def token_request(
    creds: Credentials,
    auth: ClientAuth,
    style: AuthStyle,
    now: float | None = None,
    dpop_proof: str | None = None,
) -> TokenRequest:
    """The headers and body of one attempt, with the client authenticated by `style`.

    `style` is a concrete style, never `AuthStyle.AUTO`. A JWT style signs a fresh
    assertion each time: assertions carry a unique `jti` and may not be replayed.
    """
    params: list[tuple[str, str | tuple[str, ...]]] = [("grant_type", "client_credentials")]
    if creds.scopes:
        params.append(("scope", " ".join(creds.scopes)))
    own = _OWN_PARAMS[style]
    params.extend((name, values) for name, values in creds.endpoint_params if name not in own)
    headers = {"Accept": "application/json"}
    secrets: list[str] = []
    if style is AuthStyle.HEADER:
        headers["Authorization"] = basic_credentials(auth.client_id, auth.secret())
    else:
        params.append(("client_id", auth.client_id))
    if style is AuthStyle.PARAMS:
        params.append(("client_secret", auth.secret()))
    if style.signs_assertion:
        signed = _assertion(creds, auth, now)
        secrets.append(signed)
        params.append(("client_assertion_type", assertion.ASSERTION_TYPE))
        params.append(("client_assertion", signed))
    for name, value in creds.token_headers:
        headers[name] = value
        secrets.append(value)
    if dpop_proof is not None:  # replayable while it is fresh: a secret for that long
        headers["DPoP"] = dpop_proof
        secrets.append(dpop_proof)
    if creds.request_format == "json":
        headers["Content-Type"] = "application/json"
        body = json.dumps({name: _json_value(value) for name, value in params}).encode()
    else:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = urlencode(list(_form_pairs(params))).encode("ascii")
    return TokenRequest(headers, body, tuple(secrets))


def _assertion(creds: Credentials, auth: ClientAuth, now: float | None) -> str:
    assert creds.assertion is not None  # the rules loader makes sure
    try:
        return assertion.client_assertion(
            creds.assertion,
            client_id=auth.client_id,
            client_secret=auth.client_secret,
            token_url=creds.token_url,
            now=now,
        )
    except ValueError as e:
        raise TokenError(f"cannot sign the client assertion: {e}", error="invalid_client") from None


def _basic_pair(client_id: str, client_secret: str) -> str:
    return f"{quote_plus(client_id)}:{quote_plus(client_secret)}"


def _form_pairs(params: list[tuple[str, str | tuple[str, ...]]]) -> Iterator[tuple[str, str]]:
    for name, value in params:
        if isinstance(value, tuple):
            yield from ((name, v) for v in value)
        else:
            yield name, value


def _json_value(value: str | tuple[str, ...]) -> str | list[str]:
    """One value as a string, several as a list."""
    if isinstance(value, str):
        return value
    return value[0] if len(value) == 1 else list(value)
