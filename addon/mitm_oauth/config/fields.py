"""Every field a rule may have, in one table: the validator, the JSON Schema and the
README's field reference are all made from it, so the three cannot drift apart.

A field's `kind` says how its value is read. Simple kinds (strings, file paths,
switches, choices, seconds) are read from the table alone; `custom` fields
have a method of their own in `validate.RuleReader` and their schema here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from ..model import (
    AUTH_STYLE_NAMES,
    DEFAULT_ACCEPT,
    DEFAULT_ASSERTION_LIFETIME,
    DEFAULT_HEADER_VALUE,
    DEFAULT_PURGE_ON_STATUS,
)
from ..oauth import assertion

Kind = Literal["string", "file", "boolean", "choice", "seconds", "custom"]

REQUIRED = object()
"""The `default` of a field that must be given."""


@dataclass(frozen=True)
class Field:
    name: str
    """Its key; `match.host` is the key `host` in the rule's `match` mapping."""
    kind: Kind
    summary: str
    """One line, for editors (the JSON Schema's description)."""
    reference: str
    """What users read in the README; fields that share one text share one row."""
    default: Any = None
    """What an absent field means; `REQUIRED` for none."""
    choices: tuple[str, ...] = ()
    maximum: int = 0
    """The largest value of a `seconds` field."""
    schema: dict[str, Any] = field(default_factory=dict)
    """The JSON Schema of a `custom` field's value."""

    def __post_init__(self) -> None:
        if self.kind == "seconds" and self.maximum < 1:
            raise ValueError(f"{self.name}: a seconds field needs its maximum")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"{self.name}: a choice field needs its choices")

    @property
    def key(self) -> str:
        return self.name.rpartition(".")[2]

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the value, with its summary as the description."""
        by_kind: dict[str, dict[str, Any]] = {
            "boolean": {"type": "boolean"},
            "choice": {"enum": list(self.choices)},
            "seconds": {"type": "integer", "minimum": 1, "maximum": self.maximum},
        }
        value = by_kind.get(self.kind, self.schema or _STRING)
        return {"description": self.summary, **value}


_STRING: dict[str, Any] = {"type": "string", "minLength": 1}
_SCHEMES: dict[str, Any] = {"enum": ["http", "https"]}

_SECRET_FILES = (
    "Instead of `client_secret` / `client_id` (one or the other): the file is read at "
    "each token fetch, so a secret rotated by writing a new file and renaming it over "
    "the old one is used from the next fetch on. One trailing newline is dropped; an "
    "empty or unreadable file is an error (at load, and as a failed fetch later), never "
    "an empty secret. Relative paths are relative to the rules file."
)

_KEY = (
    "For `private_key_jwt`: an unencrypted PEM private key (RSA ≥ 2048 bits for "
    "RS*/PS*, EC on the algorithm's curve for ES*), checked at load and read again at "
    "each fetch, so a rotated key is used from the next fetch on. `key_id` becomes the "
    "assertion's `kid`."
)

_CERTIFICATE = (
    "A PEM client certificate (chain) and its unencrypted key, shown to the token "
    "endpoint in the TLS handshake; required by the two TLS styles and usable with "
    "every other. Checked at load; a renewed certificate (files replaced) is used from "
    "the next fetch on."
)

_HEADER = (
    "Where the token goes on the API request, and how: for an API that wants "
    "`X-Api-Token: <token>`, set `header_name: X-Api-Token` and "
    '`header_value: "{access_token}"`. The template knows `{access_token}` (required) '
    "and `{token_type}`; `{{`/`}}` are literal braces. `client_authorization: keep`, "
    "purging, replays and flow redaction all act on this header. `Host`, `Accept`, "
    "`Cookie` and the framing headers cannot carry a token."
)

FIELDS: tuple[Field, ...] = (
    Field(
        "name",
        "custom",
        "Unique; letters, digits, '_', '.' and '-'.",
        "Names the rule in logs and error responses: unique, letters, digits, `_`, `.` and `-`.",
        default=REQUIRED,
        schema={"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
    ),
    Field(
        "match",
        "custom",
        "Where the rule applies: the request's real destination.",
        "Where the rule applies: the request's real destination, by the fields below.",
        default=REQUIRED,
    ),
    Field(
        "match.host",
        "custom",
        'Exact host, or "*.example.com" for exactly one more label.',
        "Compared with the request's real destination, lower-cased, trailing dot dropped. "
        "Unicode names are stored in their IDNA (`xn--`) form; IP addresses (`[::1]` or `::1`) "
        "are allowed. `*.example.com` matches `a.example.com`, never `example.com` or "
        "`a.b.example.com`.",
        default=REQUIRED,
        schema=_STRING,
    ),
    Field(
        "match.scheme",
        "custom",
        "https (default), http, or both. Bearer tokens travel over TLS only unless a rule "
        "allows http.",
        "`https` by default: bearer tokens travel over TLS only, unless a rule explicitly "
        "allows `http` (RFC 6750 §5.3).",
        default="https",
        schema={"oneOf": [_SCHEMES, {"type": "array", "items": _SCHEMES, "minItems": 1}]},
    ),
    Field(
        "match.port",
        "custom",
        "Default: any port.",
        "A number; omitted means any port.",
        schema={"type": "integer", "minimum": 1, "maximum": 65535},
    ),
    Field(
        "match.path",
        "custom",
        'Path prefix on segment boundaries: /v1 matches /v1 and /v1/x, not /v10. Default "/".',
        "A prefix on segment boundaries: `/v1` and `/v1/` both match `/v1` and `/v1/x`, never "
        "`/v10`. The query string is not part of the path.",
        default="/",
        schema={"type": "string", "pattern": "^/[^?#]*$"},
    ),
    Field(
        "match.methods",
        "custom",
        "Default: any method.",
        "Upper-cased; omitted means any method.",
        schema={"oneOf": [_STRING, {"type": "array", "items": _STRING, "minItems": 1}]},
    ),
    Field(
        "token_url",
        "custom",
        "The token endpoint: https, or http on loopback (or with allow_insecure_token_url).",
        "Absolute `http(s)` URL; credentials in the URL are refused.",
        default=REQUIRED,
        schema={"type": "string", "pattern": "^https?://"},
    ),
    Field(
        "client_id",
        "custom",
        "${VAR} and ${VAR:-default} come from the environment.",
        "Required, non-empty.",
        schema=_STRING,
    ),
    Field(
        "client_secret",
        "custom",
        "Better as ${VAR}, or use client_secret_file.",
        "Required, non-empty.",
        schema=_STRING,
    ),
    Field(
        "scopes",
        "custom",
        "KrakenD's comma-separated string, or a list.",
        "Items trimmed, empty items and repeats dropped, sent space-separated as `scope`; no "
        "`scope` parameter when empty.",
        schema={"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    ),
    Field(
        "endpoint_params",
        "custom",
        "Extra token-request parameters: name -> list of values (not scope or grant_type).",
        "Every value is sent, multi-values repeated. `scope` (use `scopes`) and `grant_type` "
        "are refused. A single string is taken as a one-value list.",
        schema={
            "type": "object",
            "propertyNames": {"not": {"enum": ["scope", "grant_type"]}},
            "additionalProperties": {
                "oneOf": [_STRING, {"type": "array", "items": _STRING, "minItems": 1}]
            },
        },
    ),
    Field(
        "auth_style",
        "choice",
        "auto: HTTP Basic, then the body; header (client_secret_basic): Basic only; params "
        "(client_secret_post): body only; client_secret_jwt / private_key_jwt: a signed "
        "assertion (RFC 7523); tls_client_auth / self_signed_tls_client_auth: the client "
        "certificate (RFC 8705).",
        "`header`: HTTP Basic with id and secret form-urlencoded first (RFC 6749 §2.3.1). "
        "`params`: `client_id`/`client_secret` in the body (replacing any in "
        "`endpoint_params`). `auto`: golang/oauth2's rule, see below.",
        default="auto",
        choices=AUTH_STYLE_NAMES,
    ),
    Field(
        "accept",
        "custom",
        "Accept header for the API request; null leaves the client's alone.",
        "The `Accept` header set on the API request, as KrakenD's Auth0 example does with a "
        "martian modifier. `null` leaves it alone.",
        default=DEFAULT_ACCEPT,
        schema={"type": ["string", "null"]},
    ),
    Field(
        "client_secret_file",
        "file",
        "Instead of client_secret: read at each token fetch; rotate by renaming a new file "
        "over it.",
        _SECRET_FILES,
    ),
    Field(
        "client_id_file",
        "file",
        "Instead of client_id: read at each token fetch.",
        _SECRET_FILES,
    ),
    Field(
        "client_authorization",
        "choice",
        "replace (default) or keep a client's own Authorization.",
        "`replace` (default, as KrakenD): the token replaces a client's own `Authorization`. "
        "`keep`: a request that has one is sent as it is, without fetching a token.",
        default="replace",
        choices=("replace", "keep"),
    ),
    Field(
        "token_type",
        "custom",
        "The scheme to send; default: the token's, which must be Bearer.",
        "The scheme to send. Without it, the token endpoint's `token_type` must be Bearer "
        "(after normalisation): a MAC or DPoP token cannot be used by just putting it in a "
        "header, so that is an error, not a guess. Set it for endpoints that call their Bearer "
        "tokens something else (Apigee's `BearerToken`).",
        schema=_STRING,
    ),
    Field(
        "purge_on_status",
        "custom",
        "Upstream statuses that drop the token (default [401]).",
        'Upstream answers that mean "this token is no good" (default `[401]`; `[]` turns '
        "purging off).",
        default=sorted(DEFAULT_PURGE_ON_STATUS),
        schema={"type": "array", "items": {"type": "integer", "minimum": 400, "maximum": 599}},
    ),
    Field(
        "retry_on_401",
        "boolean",
        "Replay an idempotent request once with a new token.",
        "After a purging status, replay the request once with a new token, if it is "
        "idempotent (GET, HEAD, OPTIONS, PUT, DELETE) and its body was not streamed.",
        default=False,
    ),
    Field(
        "ca_file",
        "file",
        "PEM CA bundle trusted for the token endpoint.",
        "PEM bundle that replaces the default trust store (certifi) for this rule's token "
        "endpoint.",
    ),
    Field(
        "allow_insecure_token_url",
        "boolean",
        "Allow an http:// token_url off loopback.",
        "Without it, `token_url` must be `https`, except on loopback (127.0.0.0/8, `::1`, "
        "`localhost`).",
        default=False,
    ),
    Field(
        "is_disabled",
        "boolean",
        "Checked, then left out (KrakenD's switch).",
        "KrakenD's switch: a disabled rule is checked (its files need not exist yet), then "
        "left out.",
        default=False,
    ),
    Field(
        "private_key_file",
        "file",
        "Unencrypted PEM private key for private_key_jwt; read at each token fetch.",
        _KEY,
    ),
    Field("key_id", "string", "The assertion's kid header.", _KEY),
    Field(
        "assertion_alg",
        "custom",
        "Signing algorithm: HS256 (default), HS384, HS512 for client_secret_jwt; RS256 "
        "(default), PS256, ES256 and their 384/512 siblings for private_key_jwt.",
        "`client_secret_jwt`: HS256 (default), HS384, HS512; the secret must be at least as "
        "long as the hash (32/48/64 bytes, RFC 7518 §3.2). `private_key_jwt`: RS256 "
        "(default), RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512.",
        schema={"enum": [*assertion.HMAC_ALGORITHMS, *assertion.KEY_ALGORITHMS]},
    ),
    Field(
        "assertion_audience",
        "string",
        "The assertion's aud claim; default: token_url (some providers want the issuer).",
        "The assertion's `aud`: `token_url` by default; some providers want their issuer "
        "identifier.",
    ),
    Field(
        "assertion_lifetime",
        "seconds",
        "Seconds an assertion is valid (default 60).",
        "Seconds from `iat` to `exp` (default 60, at most 3600).",
        default=DEFAULT_ASSERTION_LIFETIME,
        maximum=assertion.MAX_LIFETIME,
    ),
    Field(
        "client_cert_file",
        "file",
        "PEM client certificate shown to the token endpoint (with any auth style).",
        _CERTIFICATE,
    ),
    Field("client_key_file", "file", "Unencrypted PEM key of client_cert_file.", _CERTIFICATE),
    Field(
        "token_headers",
        "custom",
        "Extra headers on the token request; values are kept out of logs.",
        "Extra headers on the token request (an API gateway's key in front of the IdP, a "
        "tenant header). Values are treated as secrets: never logged, shown as `[redacted]` in "
        "exchange flows. Headers the request sets itself (`Content-Type`, `Host`, …) are "
        "refused, and `Authorization` too when the auth style sends its own.",
        schema={"type": "object", "additionalProperties": _STRING},
    ),
    Field(
        "dpop",
        "boolean",
        "Ask for DPoP-bound tokens (RFC 9449) and sign a proof per request.",
        "Ask for sender-constrained tokens (RFC 9449): every token request and every API "
        "request carries a fresh DPoP proof signed by the rule's key, and the token goes as "
        "`Authorization: DPoP <token>`. The token endpoint must answer with a DPoP token; a "
        "Bearer answer is a failure (it ignored the proof). Works with every `auth_style`.",
        default=False,
    ),
    Field(
        "dpop_key_file",
        "file",
        "PEM key that signs DPoP proofs (default: one made in memory).",
        "With `dpop`: an unencrypted PEM private key, EC P-256 or RSA of 2048 bits or more, "
        "read again when the file changes. Without it, a key pair is made per credential set "
        "at start-up and kept in memory only; its tokens are then not shared through "
        "`oauth_store` (no other process has the key).",
    ),
    Field(
        "dpop_alg",
        "choice",
        "ES256, RS256 or PS256 (must fit the key).",
        "With `dpop`: the proofs' algorithm. Default: ES256 for a key made in memory, and "
        "what the key file's key signs (ES256 for EC, RS256 for RSA).",
        choices=("ES256", "RS256", "PS256"),
    ),
    Field(
        "token_request_format",
        "choice",
        "form (default, RFC 6749) or json.",
        "`form` (RFC 6749) or `json` for the few endpoints that accept JSON only: the same "
        "parameters as a JSON object, a parameter with several values as a list.",
        default="form",
        choices=("form", "json"),
    ),
    Field(
        "header_name",
        "custom",
        "Header the token goes in (default Authorization).",
        _HEADER,
        default="Authorization",
        schema=_STRING,
    ),
    Field(
        "header_value",
        "custom",
        f"Template of its value (default {DEFAULT_HEADER_VALUE!r}).",
        _HEADER,
        default=DEFAULT_HEADER_VALUE,
        schema={"type": "string", "pattern": "\\{access_token\\}"},
    ),
)

BY_NAME = {f.name: f for f in FIELDS}
RULE_KEYS = tuple(f.name for f in FIELDS if "." not in f.name)
MATCH_KEYS = tuple(f.key for f in FIELDS if f.name.startswith("match."))


def reference_table() -> str:
    """The README's field reference: a Markdown table, one row per text."""
    lines = ["| field | meaning |", "|---|---|"]
    for names, text in _rows():
        lines.append(f"| {', '.join(f'`{n}`' for n in names)} | {text} |")
    return "\n".join(lines) + "\n"


def _rows() -> Iterator[tuple[list[str], str]]:
    """Fields in table order, neighbours with the same text together."""
    names: list[str] = []
    text = ""
    for f in FIELDS:
        if names and f.reference != text:
            yield names, text
            names = []
        names.append(f.name)
        text = f.reference
    yield names, text
