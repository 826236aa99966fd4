"""A JSON Schema for rules.yaml, so editors validate and complete it.

The loader (rules.py) stays the authority: it checks what a schema cannot
(secret files, public suffixes, environment variables). The schema is kept in
step by a test that loads every example through both.
"""

from __future__ import annotations

import json
from typing import Any

from addon.rules import AUTH_STYLES, CLIENT_AUTHORIZATION

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
        {"oneOf": [{"required": ["client_secret"]}, {"required": ["client_secret_file"]}]},
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
            "auto: HTTP Basic, then the body; header: Basic only; params: body only.",
            enum=list(AUTH_STYLES),
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
