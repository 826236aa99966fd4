"""The field table is the one source: the validator, the JSON Schema and the README follow it."""

from __future__ import annotations

import re

import pytest

from mitm_oauth.config.fields import FIELDS, RULE_KEYS, reference_table
from mitm_oauth.config.load import parse_rules
from mitm_oauth.config.schema import SCHEMA
from mitm_oauth.errors import RulesError
from tests.support.proxy import ROOT

BEGIN = "<!-- rule fields: generated from addon/mitm_oauth/config/fields.py; edit there -->\n"
END = "<!-- end of rule fields -->\n"
WRONG = {"boolean": "'yes'", "choice": "sideways", "seconds": "0", "string": "[1]", "file": "7"}
"""A value each simple kind refuses."""


def readme_reference() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme[readme.index(BEGIN) + len(BEGIN) : readme.index(END)]


def test_the_readme_field_reference_is_the_table():
    """Regenerate with: python -c 'from mitm_oauth.config.fields import reference_table as r;
    print(r(), end="")' and paste between the markers."""
    assert readme_reference() == reference_table()


def test_every_field_is_in_the_readme_reference_and_in_the_annotated_examples():
    readme = (ROOT / "README.md").read_text()
    example = readme[readme.index("## Rules reference") : readme.index(BEGIN)]
    rules_yaml = (ROOT / "rules.yaml").read_text()
    for field in FIELDS:
        assert f"`{field.name}`" in readme_reference()
        assert re.search(rf"\b{field.key}:", example), field.name
        assert re.search(rf"\b{field.key}:", rules_yaml), field.name


def test_the_schema_has_the_table_fields_in_table_order():
    rule = SCHEMA["properties"]["rules"]["items"]
    assert tuple(rule["properties"]) == RULE_KEYS
    assert rule["required"] == ["name", "match", "token_url"]
    assert rule["properties"]["match"]["required"] == ["host"]


@pytest.mark.parametrize("field", [f for f in FIELDS if f.kind in WRONG], ids=lambda f: f.name)
def test_each_simple_field_is_checked_as_its_kind_says(field):
    jwt = field.name.startswith(("assertion_", "key_id"))
    credentials = ["auth_style: private_key_jwt", "private_key_file: key.pem"] if jwt else []
    lines = [
        "name: api",
        "match: {host: api.example.com}",
        "token_url: https://idp.example.com/token",
        "client_id: id",
        *(credentials or ["client_secret: s"]),
        f"{field.name}: {WRONG[field.kind]}",
    ]
    text = "rules:\n  - " + "\n    ".join(lines) + "\n"
    with pytest.raises(RulesError) as raised:
        parse_rules(text, file="rules.yaml", environ={})
    assert raised.value.field == field.name
