"""A JSON Schema for rules.yaml, so editors validate and complete it.

The loader (rules.py) stays the authority: it checks what a schema cannot
(secret files, public suffixes, environment variables). The schema is kept in
step by a test that loads every example through both.
"""

from __future__ import annotations

import json
from typing import Any

from ..oauth import assertion
from .rules import (
    AUTH_STYLE_ALIASES,
    AUTH_STYLES,
    CLIENT_AUTHORIZATION,
    DEFAULT_HEADER_VALUE,
    REQUEST_FORMATS,
    SECRETLESS_STYLES,
)

_STRING = {"type": "string", "minLength": 1}


def _described(description: str, **schema: Any) -> dict[str, Any]:
    return {"description": description, **schema}


MATCH = {
    "type": "object",
    "description": "Where the rule applies: the request's real destination.",
    "required": ["host"],
    "additionalProperties": False,
    "properties": {
        "host": _described('Exact host, or "*.example.com" for exactly one more label.', **_STRING),
        "port": _described("Default: any port.", type="integer", minimum=1, maximum=65535),
        "scheme": _described(
            "https (default), http, or both. Bearer tokens travel over TLS only unless a "
            "rule allows http.",
            oneOf=[
                {"enum": ["http", "https"]},
                {"type": "array", "items": {"enum": ["http", "https"]}, "minItems": 1},
            ],
        ),
        "path": _described(
            'Path prefix on segment boundaries: /v1 matches /v1 and /v1/x, not /v10. Default "/".',
            type="string",
            pattern="^/[^?#]*$",
        ),
        "methods": _described(
            "Default: any method.",
            oneOf=[_STRING, {"type": "array", "items": _STRING, "minItems": 1}],
        ),
    },
}

RULE = {
    "type": "object",
    "required": ["name", "match", "token_url"],
    "additionalProperties": False,
    "allOf": [
        {"oneOf": [{"required": ["client_id"]}, {"required": ["client_id_file"]}]},
        {
            "if": {
                "required": ["auth_style"],
                "properties": {"auth_style": {"enum": list(SECRETLESS_STYLES)}},
            },
            "then": {
                "not": {
                    "anyOf": [{"required": ["client_secret"]}, {"required": ["client_secret_file"]}]
                }
            },
            "else": {
                "oneOf": [{"required": ["client_secret"]}, {"required": ["client_secret_file"]}]
            },
        },
        {
            "if": {
                "required": ["auth_style"],
                "properties": {"auth_style": {"const": "private_key_jwt"}},
            },
            "then": {"required": ["private_key_file"]},
        },
        {
            "if": {
                "required": ["auth_style"],
                "properties": {
                    "auth_style": {"enum": ["tls_client_auth", "self_signed_tls_client_auth"]}
                },
            },
            "then": {"required": ["client_cert_file", "client_key_file"]},
        },
        {
            "dependentRequired": {
                "client_cert_file": ["client_key_file"],
                "client_key_file": ["client_cert_file"],
            }
        },
    ],
    "properties": {
        "name": _described(
            "Unique; letters, digits, '_', '.' and '-'.",
            type="string",
            pattern="^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        ),
        "match": MATCH,
        "token_url": _described(
            "The token endpoint: https, or http on loopback (or with allow_insecure_token_url).",
            type="string",
            pattern="^https?://",
        ),
        "client_id": _described("${VAR} and ${VAR:-default} come from the environment.", **_STRING),
        "client_id_file": _described("Instead of client_id: read at each token fetch.", **_STRING),
        "client_secret": _described("Better as ${VAR}, or use client_secret_file.", **_STRING),
        "client_secret_file": _described(
            "Instead of client_secret: read at each token fetch; rotate by renaming a new file "
            "over it.",
            **_STRING,
        ),
        "scopes": _described(
            "KrakenD's comma-separated string, or a list.",
            oneOf=[{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        ),
        "endpoint_params": _described(
            "Extra token-request parameters: name -> list of values (not scope or grant_type).",
            type="object",
            propertyNames={"not": {"enum": ["scope", "grant_type"]}},
            additionalProperties={
                "oneOf": [_STRING, {"type": "array", "items": _STRING, "minItems": 1}]
            },
        ),
        "auth_style": _described(
            "auto: HTTP Basic, then the body; header (client_secret_basic): Basic only; params "
            "(client_secret_post): body only; client_secret_jwt / private_key_jwt: a signed "
            "assertion (RFC 7523); tls_client_auth / self_signed_tls_client_auth: the client "
            "certificate (RFC 8705).",
            enum=[*AUTH_STYLES, *AUTH_STYLE_ALIASES],
        ),
        "assertion_alg": _described(
            "Signing algorithm: HS256 (default), HS384, HS512 for client_secret_jwt; RS256 "
            "(default), PS256, ES256 and their 384/512 siblings for private_key_jwt.",
            enum=[*assertion.HMAC_ALGORITHMS, *assertion.KEY_ALGORITHMS],
        ),
        "assertion_audience": _described(
            "The assertion's aud claim; default: token_url (some providers want the issuer).",
            **_STRING,
        ),
        "assertion_lifetime": _described(
            "Seconds an assertion is valid (default 60).",
            type="integer",
            minimum=1,
            maximum=assertion.MAX_LIFETIME,
        ),
        "private_key_file": _described(
            "Unencrypted PEM private key for private_key_jwt; read at each token fetch.", **_STRING
        ),
        "key_id": _described("The assertion's kid header.", **_STRING),
        "client_cert_file": _described(
            "PEM client certificate shown to the token endpoint (with any auth style).", **_STRING
        ),
        "client_key_file": _described("Unencrypted PEM key of client_cert_file.", **_STRING),
        "token_headers": _described(
            "Extra headers on the token request; values are kept out of logs.",
            type="object",
            additionalProperties=_STRING,
        ),
        "token_request_format": _described(
            "form (default, RFC 6749) or json.", enum=list(REQUEST_FORMATS)
        ),
        "header_name": _described("Header the token goes in (default Authorization).", **_STRING),
        "header_value": _described(
            f"Template of its value (default {DEFAULT_HEADER_VALUE!r}).",
            type="string",
            pattern="\\{access_token\\}",
        ),
        "accept": _described(
            "Accept header for the API request; null leaves the client's alone.",
            type=["string", "null"],
        ),
        "client_authorization": _described(
            "replace (default) or keep a client's own Authorization.",
            enum=list(CLIENT_AUTHORIZATION),
        ),
        "token_type": _described(
            "The scheme to send; default: the token's, which must be Bearer.", **_STRING
        ),
        "purge_on_status": _described(
            "Upstream statuses that drop the token (default [401]).",
            type="array",
            items={"type": "integer", "minimum": 400, "maximum": 599},
        ),
        "retry_on_401": _described(
            "Replay an idempotent request once with a new token.", type="boolean"
        ),
        "ca_file": _described("PEM CA bundle trusted for the token endpoint.", **_STRING),
        "allow_insecure_token_url": _described(
            "Allow an http:// token_url off loopback.", type="boolean"
        ),
        "is_disabled": _described("Checked, then left out (KrakenD's switch).", type="boolean"),
    },
}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Client-credentials rules for the mitmproxy addon",
    "type": "object",
    "required": ["rules"],
    "additionalProperties": False,
    "patternProperties": {"^x-": {"description": "Ignored: room for YAML anchors."}},
    "properties": {"rules": {"type": "array", "items": RULE}},
}


def schema_json() -> str:
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"
