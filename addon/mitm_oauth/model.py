"""What a rules file means: rules, where they apply, and the credential sets they use.

Plain immutable data, made by `config` and read by everything else. No I/O and
nothing beyond the standard library, so that any part can use it and tests can
build it by hand.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .secret import SecretValue

HTTP_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""RFC 9110 §5.6.2: what header names, methods and authentication schemes are made of."""
DEFAULT_ACCEPT = "application/json"
DEFAULT_HEADER_VALUE = "{token_type} {access_token}"
DEFAULT_PURGE_ON_STATUS = frozenset({401})
DEFAULT_ASSERTION_LIFETIME = 60
"""Seconds from an assertion's `iat` to its `exp`."""


class AuthStyle(enum.StrEnum):
    """How the client proves who it is to the token endpoint, and what that takes.

    golang/oauth2's `AuthStyle` names the first three; the others are RFC 7523's
    assertions and RFC 8705's certificates. The OpenID Connect names of the
    first two (`client_secret_basic`, `client_secret_post`) are accepted too.
    """

    AUTO = "auto"
    """HTTP Basic, then the body after a refusal, as golang/oauth2."""
    HEADER = "header"
    """HTTP Basic with id and secret (RFC 6749 §2.3.1)."""
    PARAMS = "params"
    """Id and secret in the body."""
    CLIENT_SECRET_JWT = "client_secret_jwt"
    """An assertion signed with the client secret (RFC 7523 §2.2)."""
    PRIVATE_KEY_JWT = "private_key_jwt"
    """An assertion signed with a private key; no secret crosses the network."""
    TLS_CLIENT_AUTH = "tls_client_auth"
    """A certificate from a CA the endpoint trusts (RFC 8705 §2.1)."""
    SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth"
    """A certificate the endpoint knows by itself (RFC 8705 §2.2)."""

    @classmethod
    def _missing_(cls, value: object) -> AuthStyle | None:
        return _ALIASES.get(value) if isinstance(value, str) else None

    @property
    def needs_secret(self) -> bool:
        return self in (self.AUTO, self.HEADER, self.PARAMS, self.CLIENT_SECRET_JWT)

    @property
    def needs_key(self) -> bool:
        return self is self.PRIVATE_KEY_JWT

    @property
    def needs_certificate(self) -> bool:
        return self in (self.TLS_CLIENT_AUTH, self.SELF_SIGNED_TLS_CLIENT_AUTH)

    @property
    def signs_assertion(self) -> bool:
        return self in (self.CLIENT_SECRET_JWT, self.PRIVATE_KEY_JWT)

    @property
    def sends_own_authorization(self) -> bool:
        """Whether the token request's `Authorization` header is the style's."""
        return self in (self.AUTO, self.HEADER)


_ALIASES = {"client_secret_basic": AuthStyle.HEADER, "client_secret_post": AuthStyle.PARAMS}
AUTH_STYLE_NAMES = (*(style.value for style in AuthStyle), *_ALIASES)
"""Every name `auth_style` accepts."""


@dataclass(frozen=True)
class Match:
    """Where a rule applies. `host` is lower-case ASCII; `*.x` matches one extra label."""

    host: str
    schemes: frozenset[str] = frozenset({"https"})
    port: int | None = None
    path: str = "/"
    methods: frozenset[str] | None = None

    @property
    def is_wildcard(self) -> bool:
        return self.host.startswith("*.")


@dataclass(frozen=True)
class AssertionSettings:
    """How a rule's assertions are made. The key file is read at each use, like secret files."""

    algorithm: str
    audience: str | None = None
    """The `aud` claim; None means the token endpoint URL."""
    lifetime: int = DEFAULT_ASSERTION_LIFETIME
    private_key_file: str | None = None
    """PEM private key for private_key_jwt; client_secret_jwt signs with the client secret."""
    key_id: str | None = None


@dataclass(frozen=True)
class ClientCertificate:
    """A PEM certificate (chain) and its unencrypted PEM private key."""

    cert_file: str
    key_file: str


@dataclass(frozen=True)
class DPoPSettings:
    """Sender-constrained tokens (RFC 9449): the proofs' algorithm and, if not made in memory,
    the key's PEM file."""

    algorithm: str | None = None
    """None: ES256 for a key made in memory, what the key file's key signs otherwise."""
    key_file: str | None = None


@dataclass(frozen=True)
class Credentials:
    """Everything that decides which token the IdP issues, and how it is asked for.

    Rules with equal credentials share one cached token. `endpoint_params` is
    left out of `repr()` because KrakenD configs put client secrets there.
    """

    token_url: str
    client_id: SecretValue
    client_secret: SecretValue | None
    """None for the styles that need no shared secret (private_key_jwt, TLS client auth)."""
    auth_style: AuthStyle = AuthStyle.AUTO
    scopes: tuple[str, ...] = ()
    endpoint_params: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(), repr=False)
    ca_file: str | None = None
    """Extra CA certificates to trust for the token endpoint (PEM)."""
    assertion: AssertionSettings | None = None
    """For client_secret_jwt and private_key_jwt."""
    client_certificate: ClientCertificate | None = None
    """Shown to the token endpoint in the TLS handshake, whatever the auth style."""
    token_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    """Extra headers on the token request; their values are treated as secrets."""
    request_format: str = "form"
    dpop: DPoPSettings | None = None
    """Ask for DPoP-bound tokens, with proofs signed by this key."""

    def __post_init__(self) -> None:
        # A name is as good as the member: `Credentials(..., auth_style="header")`.
        object.__setattr__(self, "auth_style", AuthStyle(self.auth_style))

    def __hash__(self) -> int:
        # Looked up in the cache on every request: hash the fields once.
        try:
            return self._hash  # type: ignore[attr-defined]
        except AttributeError:
            value = hash(tuple(getattr(self, name) for name in self.__dataclass_fields__))
            object.__setattr__(self, "_hash", value)
            return value


@dataclass(frozen=True)
class Rule:
    name: str
    match: Match
    credentials: Credentials
    accept: str | None = DEFAULT_ACCEPT
    client_authorization: str = "replace"
    """"keep": a request that has its own Authorization is sent as it is."""
    token_type: str | None = None
    """The scheme to send, whatever the endpoint calls its tokens; None accepts Bearer only."""
    header_name: str = "Authorization"
    header_value: str = DEFAULT_HEADER_VALUE
    """A template with {access_token} and optionally {token_type}."""
    purge_on_status: frozenset[int] = DEFAULT_PURGE_ON_STATUS
    """Upstream statuses that mean "this token is no good": it is dropped from the cache."""
    retry_on_401: bool = False
    """Replay an idempotent request once, with a new token, after a purging status."""
    position: int = 0
    """Index in the file; the last tie-breaker between equally specific rules."""


def credential_sets(rules: Iterable[Rule]) -> dict[Credentials, tuple[str, ...]]:
    """Each credential set of `rules`, with the names of the rules that use it, in file order."""
    names: dict[Credentials, list[str]] = {}
    for rule in rules:
        names.setdefault(rule.credentials, []).append(rule.name)
    return {creds: tuple(n) for creds, n in names.items()}
