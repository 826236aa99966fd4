"""A JSON Schema for rules.yaml, so editors validate and complete it.

Made from the field table (`fields.py`), with what ties fields together (which
auth style needs what) from `model.AuthStyle`. The loader stays the authority:
it checks what a schema cannot (files, public suffixes, environment variables).
"""

from __future__ import annotations

import json
from typing import Any

from ..model import AuthStyle
from .fields import FIELDS, REQUIRED, Field

_EITHER_SECRET = [{"required": ["client_secret"]}, {"required": ["client_secret_file"]}]


def _style_is(styles: list[AuthStyle]) -> dict[str, Any]:
    return {"required": ["auth_style"], "properties": {"auth_style": {"enum": styles}}}


def _object(fields: list[Field], **schema: Any) -> dict[str, Any]:
    return {
        "type": "object",
        **schema,
        "required": [f.key for f in fields if f.default is REQUIRED],
        "additionalProperties": False,
        "properties": {f.key: f.json_schema() for f in fields},
    }


def rule_schema() -> dict[str, Any]:
    top = [f for f in FIELDS if "." not in f.name]
    secretless = [s for s in AuthStyle if not s.needs_secret]
    rule = _object(top)
    rule["properties"]["match"] = _object(
        [f for f in FIELDS if f.name.startswith("match.")],
        description=rule["properties"]["match"]["description"],
    )
    rule["allOf"] = [
        {"oneOf": [{"required": ["client_id"]}, {"required": ["client_id_file"]}]},
        {
            "if": _style_is(secretless),
            "then": {"not": {"anyOf": _EITHER_SECRET}},
            "else": {"oneOf": _EITHER_SECRET},
        },
        *(
            {"if": _style_is([s]), "then": {"required": ["private_key_file"]}}
            for s in AuthStyle
            if s.needs_key
        ),
        {
            "if": _style_is([s for s in AuthStyle if s.needs_certificate]),
            "then": {"required": ["client_cert_file", "client_key_file"]},
        },
        {
            "dependentRequired": {
                "client_cert_file": ["client_key_file"],
                "client_key_file": ["client_cert_file"],
            }
        },
    ]
    return rule


def _schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Client-credentials rules for the mitmproxy addon",
        "type": "object",
        "required": ["rules"],
        "additionalProperties": False,
        "patternProperties": {"^x-": {"description": "Ignored: room for YAML anchors."}},
        "properties": {"rules": {"type": "array", "items": rule_schema()}},
    }


SCHEMA = _schema()


def schema_json() -> str:
    return json.dumps(SCHEMA, indent=2, ensure_ascii=False) + "\n"
