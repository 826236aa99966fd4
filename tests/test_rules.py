"""Rules file validation: every field, every error names file, rule and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from mitm_oauth.config.load import load_rules, parse_rules
from mitm_oauth.config.speedups import keep_unchanged
from mitm_oauth.errors import RulesError
from mitm_oauth.model import DEFAULT_ACCEPT, credential_sets
from mitm_oauth.secret import Secret

ENV = {"CLIENT_ID": "the-id", "CLIENT_SECRET": "the-secret", "EMPTY": ""}

MINIMAL = """
rules:
  - name: billing
    match:
      host: api.example.com
    token_url: https://idp.example.com/oauth/token
    client_id: the-id
    client_secret: the-secret
"""


def parse(text: str, environ: dict[str, str] = ENV):
    return parse_rules(textwrap.dedent(text), file="rules.yaml", environ=environ)


def rule_with(**fields: str) -> str:
    """A one-rule file whose fields (YAML snippets) replace or extend the minimal rule's."""
    base = {
        "name": "billing",
        "match": "{host: api.example.com}",
        "token_url": "https://idp.example.com/oauth/token",
        "client_id": "the-id",
        "client_secret": "the-secret",
    }
    base.update(fields)
    lines = [f"    {k}: {v}" for k, v in base.items() if v is not None]
    return "rules:\n  -" + "\n".join(lines)[3:] + "\n"


def test_minimal_rule_gets_the_documented_defaults():
    (rule,) = parse(MINIMAL)
    assert rule.name == "billing"
    assert rule.match.host == "api.example.com"
    assert rule.match.schemes == {"https"}
    assert rule.match.port is None
    assert rule.match.path == "/"
    assert rule.match.methods is None
    assert rule.credentials.auth_style == "auto"
    assert rule.credentials.scopes == ()
    assert rule.credentials.endpoint_params == ()
    assert rule.credentials.client_secret == Secret("the-secret")
    assert rule.accept == DEFAULT_ACCEPT


def test_full_rule_from_the_issue():
    (rule,) = parse(
        """
        rules:
          - name: billing
            match:
              host: API.Example.com.
              port: 443
              scheme: [http, https]
              path: /v1/
              methods: [get, POST]
            token_url: https://idp.example.com/oauth/token
            client_id: ${CLIENT_ID}
            client_secret: ${CLIENT_SECRET}
            scopes: " read, write ,,read"
            endpoint_params:
              audience: [https://api.example.com]
              resource: [a, b]
            auth_style: params
            accept: null
        """
    )
    assert rule.match.host == "api.example.com"
    assert rule.match.port == 443
    assert rule.match.schemes == {"http", "https"}
    assert rule.match.path == "/v1"
    assert rule.match.methods == {"GET", "POST"}
    assert rule.credentials.client_id.reveal() == "the-id"
    assert rule.credentials.client_secret.reveal() == "the-secret"
    assert rule.credentials.scopes == ("read", "write")
    assert rule.credentials.endpoint_params == (
        ("audience", ("https://api.example.com",)),
        ("resource", ("a", "b")),
    )
    assert rule.credentials.auth_style == "params"
    assert rule.accept is None


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        ('"a,b"', ("a", "b")),
        ('"scope1, scope2"', ("scope1", "scope2")),  # KrakenD's old example: trimmed here
        ('""', ()),
        ('","', ()),
        ("[a, ' b ', '']", ("a", "b")),
        ("[]", ()),
    ],
)
def test_scopes_as_krakend_string_or_list(scopes, expected):
    (rule,) = parse(rule_with(scopes=scopes))
    assert rule.credentials.scopes == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("api.example.com", "api.example.com"),
        ("API.EXAMPLE.COM.", "api.example.com"),
        ("'*.example.com'", "*.example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("127.0.0.1", "127.0.0.1"),
        ("'[::1]'", "::1"),
        ("localhost", "localhost"),
    ],
)
def test_hosts_are_normalised(host, expected):
    (rule,) = parse(rule_with(match=f"{{host: {host}}}"))
    assert rule.match.host == expected


def test_disabled_rules_are_validated_but_not_used():
    assert parse(rule_with(is_disabled="true")) == []
    with pytest.raises(RulesError, match="is_disabled"):
        parse(rule_with(is_disabled="'yes'"))


def test_top_level_x_keys_hold_yaml_anchors():
    rules = parse(
        """
        x-idp: &idp
          token_url: https://idp.example.com/token
          client_id: the-id
          client_secret: the-secret
        rules:
          - {name: a, match: {host: a.example.com}, <<: *idp}
          - {name: b, match: {host: b.example.com}, <<: *idp}
        """
    )
    assert [r.name for r in rules] == ["a", "b"]
    assert rules[0].credentials == rules[1].credentials


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${CLIENT_ID}", "the-id"),
        ("pre-${CLIENT_ID}-post", "pre-the-id-post"),
        ("${UNSET:-fallback}", "fallback"),
        ("${EMPTY:-fallback}", "fallback"),
        ("$${CLIENT_ID}", "${CLIENT_ID}"),
        ("plain$value", "plain$value"),
    ],
)
def test_environment_references(value, expected):
    (rule,) = parse(rule_with(client_id=f"'{value}'"))
    assert rule.credentials.client_id.reveal() == expected


def test_every_unset_variable_of_a_file_is_named_at_once():
    """One run names them all, where each is used, so a CI job is fixed in one go."""
    text = rule_with(client_id="${FIRST}", client_secret="${SECOND}") + (
        "  - {name: other, match: {host: b.example.com}, token_url: 'https://i/t',\n"
        "     client_id: x, client_secret: s,\n"
        "     endpoint_params: {audience: ['${EMPTY}', '${FIRST}']}}\n"
    )
    with pytest.raises(RulesError) as raised:
        parse(text)
    assert str(raised.value) == (
        "rules.yaml: environment variables FIRST, SECOND, EMPTY are unset or empty "
        "(FIRST in rule 'billing' (#1) field 'client_id'; "
        "SECOND in rule 'billing' (#1) field 'client_secret'; "
        "EMPTY in rule 'other' (#2) field 'endpoint_params.audience'; "
        "FIRST in rule 'other' (#2) field 'endpoint_params.audience')"
    )


ERRORS = [
    # (rules file text, field named, words in the message)
    ("rules: []\nextra: 1\n", None, "unknown key 'extra'"),
    ("- a\n", None, "mapping with a 'rules' list"),
    ("rules: {}\n", "rules", "list"),
    ("rules: [1]\n", None, "rule #1: must be a mapping"),
    ("rules:\n  - name: [\n", None, "not valid YAML at line"),
    (rule_with(name=None), "name", "required"),
    (rule_with(name="'bad name'"), "name", "letters, digits"),
    (rule_with(nmae="x"), "nmae", "did you mean 'name'?"),
    (rule_with(client_sercet="x"), "client_sercet", "did you mean 'client_secret'?"),
    (rule_with(match=None), "match", "required"),
    (rule_with(match="{hots: a.example.com}"), "match.hots", "did you mean 'host'?"),
    (rule_with(match="{host: ''}"), "match.host", "must not be empty"),
    (rule_with(match="{host: 'a b.com'}"), "match.host", "not a valid host name"),
    (rule_with(match="{host: 'a.*.com'}"), "match.host", "whole first label"),
    (rule_with(match="{host: '*'}"), "match.host", "whole first label"),
    (rule_with(match="{host: '*.com'}"), "match.host", "public suffix 'com'"),
    (rule_with(match="{host: '*.co.uk'}"), "match.host", "public suffix 'co.uk'"),
    (rule_with(match="{host: '*.github.io'}"), "match.host", "public suffix"),
    (rule_with(match="{host: '127.1'}"), "match.host", "numeric name"),
    (rule_with(match="{host: 'a..b'}"), "match.host", "not a valid host name"),
    (rule_with(match="{host: '*.127.0.0.1'}"), "match.host", "IP address"),
    (rule_with(match="{host: a.com, port: 0}"), "match.port", "1 to 65535"),
    (rule_with(match="{host: a.com, port: '443'}"), "match.port", "1 to 65535"),
    (rule_with(match="{host: a.com, scheme: ftp}"), "match.scheme", "https, http"),
    (rule_with(match="{host: a.com, scheme: []}"), "match.scheme", "https, http"),
    (rule_with(match="{host: a.com, path: v1}"), "match.path", "start with '/'"),
    (rule_with(match="{host: a.com, path: '/a?b'}"), "match.path", "no query"),
    (rule_with(match="{host: a.com, methods: ['GE T']}"), "match.methods", "HTTP methods"),
    (rule_with(token_url=None), "token_url", "required"),
    (rule_with(token_url="idp.example.com/token"), "token_url", "absolute"),
    (rule_with(token_url="ftp://idp/token"), "token_url", "absolute"),
    (rule_with(token_url="https://u:p@idp/token"), "token_url", "credentials"),
    (rule_with(client_id=None), "client_id", "required"),
    (rule_with(client_id="123"), "client_id", "must be a string, not 123"),
    (rule_with(client_secret=None), "client_secret", "required"),
    (rule_with(client_secret="${UNSET_SECRET}"), "client_secret", "UNSET_SECRET is not set"),
    (rule_with(client_secret="${EMPTY}"), "client_secret", "EMPTY is empty"),
    (rule_with(scopes="{a: b}"), "scopes", "comma-separated"),
    (rule_with(endpoint_params="[a]"), "endpoint_params", "map parameter names"),
    (rule_with(endpoint_params="{scope: [a]}"), "endpoint_params.scope", "'scopes' field"),
    (rule_with(endpoint_params="{grant_type: [x]}"), "endpoint_params.grant_type", "grant"),
    (rule_with(endpoint_params="{audience: []}"), "endpoint_params.audience", "at least one"),
    (rule_with(auth_style="basic"), "auth_style", "auto, header, params"),
    (rule_with(accept='"a\\nb"'), "accept", "single header line"),
    (rule_with(token_url="http://idp.example.com/t"), "token_url", "must use https"),
    (rule_with(client_secret_file="s.txt"), "client_secret_file", "not both"),
    (
        rule_with(client_secret=None, client_secret_file="nope.txt"),
        "client_secret_file",
        "cannot read",
    ),
    (rule_with(ca_file="nope.pem"), "ca_file", "not a readable PEM CA bundle"),
    (rule_with(purge_on_status="[200]"), "purge_on_status", "400 to 599"),
    (rule_with(purge_on_status="401"), "purge_on_status", "400 to 599"),
    (rule_with(retry_on_401="'yes'"), "retry_on_401", "true or false"),
    (rule_with(client_authorization="merge"), "client_authorization", "replace, keep"),
    (rule_with(token_type="'Bearer token'"), "token_type", "authentication scheme"),
]


@pytest.mark.parametrize(("text", "field", "words"), ERRORS)
def test_errors_name_the_file_rule_and_field(text, field, words):
    with pytest.raises(RulesError) as caught:
        parse(text)
    error = caught.value
    assert str(error).startswith("rules.yaml: ")
    assert error.field == field
    assert words in str(error)
    if field is not None and field != "rules":
        assert error.rule is not None
        assert f"field '{field}'" in str(error)


def test_duplicate_names_are_an_error():
    text = rule_with() + rule_with()[len("rules:\n") :]
    with pytest.raises(RulesError, match="duplicate rule name 'billing'"):
        parse(text)


def test_rule_is_named_by_name_and_position():
    text = MINIMAL + "  - name: second\n    match: {host: x.com}\n"
    with pytest.raises(RulesError) as caught:
        parse(text)
    assert caught.value.rule == "'second' (#2)"
    assert caught.value.field == "token_url"


@pytest.mark.parametrize(
    "text",
    [
        rule_with(client_secret="12345"),
        rule_with(endpoint_params="{client_secret: [12345]}"),
        "rules:\n  - name: x\n    client_secret: 'hunter2\n",
    ],
)
def test_errors_never_quote_a_secret(text):
    with pytest.raises(RulesError) as caught:
        parse(text)
    assert "12345" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_repr_of_a_rule_hides_secrets_and_params():
    (rule,) = parse(rule_with(endpoint_params="{client_secret: [param-secret]}"))
    text = repr(rule)
    assert "the-secret" not in text
    assert "param-secret" not in text
    assert "Secret(sha256:" in text


def test_load_rules_reports_missing_and_unreadable_files(tmp_path: Path):
    with pytest.raises(RulesError, match=r"missing\.yaml: file not found"):
        load_rules(tmp_path / "missing.yaml")
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "binary.yaml")


def test_the_example_rules_file_is_valid():
    rules = load_rules(
        Path(__file__).parents[1] / "rules.yaml",
        environ=ENV
        | {
            "BILLING_CLIENT_ID": "id",
            "BILLING_CLIENT_SECRET": "secret",
        },
    )
    assert rules


@pytest.mark.parametrize("host", ["'*.localhost'", "'*.internal'", "'*.example.co.uk'"])
def test_wildcards_below_public_suffixes_are_allowed(host):
    (rule,) = parse(rule_with(match=f"{{host: {host}}}"))
    assert rule.match.is_wildcard


@pytest.mark.parametrize(
    ("url", "extra"),
    [
        ("http://127.0.0.1:8080/token", {}),
        ("http://localhost/token", {}),
        ("http://[::1]/token", {}),
        ("http://idp.example.com/token", {"allow_insecure_token_url": "true"}),
    ],
)
def test_http_token_url_only_on_loopback_or_when_allowed(url, extra):
    (rule,) = parse(rule_with(token_url=url, **extra))
    assert rule.credentials.token_url == url


def test_new_fields_and_their_defaults():
    (default,) = parse(MINIMAL)
    assert default.client_authorization == "replace"
    assert default.token_type is None
    assert default.purge_on_status == {401}
    assert default.retry_on_401 is False
    (rule,) = parse(
        rule_with(
            client_authorization="keep",
            token_type="MAC",
            purge_on_status="[401, 403]",
            retry_on_401="true",
        )
    )
    assert rule.client_authorization == "keep"
    assert rule.token_type == "MAC"
    assert rule.purge_on_status == {401, 403}
    assert rule.retry_on_401 is True
    (never,) = parse(rule_with(purge_on_status="[]"))
    assert never.purge_on_status == frozenset()


def test_secret_files_are_relative_to_the_rules_file_and_read_at_each_use(tmp_path: Path):
    (tmp_path / "secrets").mkdir()
    secret = tmp_path / "secrets" / "billing"
    secret.write_text("first\n")
    client_id = tmp_path / "id.txt"
    client_id.write_text("the-id")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(
        rule_with(
            client_id=None,
            client_id_file="id.txt",
            client_secret=None,
            client_secret_file="secrets/billing",
        )
    )
    (rule,) = load_rules(rules_file, environ={})
    creds = rule.credentials
    assert creds.client_id.reveal() == "the-id"
    assert creds.client_secret.reveal() == "first"
    rotated = tmp_path / "secrets" / "billing.new"
    rotated.write_text("second\r\n")
    rotated.replace(secret)  # rotation by atomic rename
    assert creds.client_secret.reveal() == "second"
    assert "second" not in repr(creds)
    secret.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        creds.client_secret.reveal()


def test_empty_secret_file_is_an_error_at_load(tmp_path: Path):
    (tmp_path / "empty").write_text("")
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rule_with(client_secret=None, client_secret_file="empty"))
    with pytest.raises(RulesError, match=r"field 'client_secret_file': .*empty is empty"):
        load_rules(rules_file, environ={})


def test_ca_file_is_checked_and_kept(tmp_path: Path):
    from tests.support.certs import make_server_cert

    cert = make_server_cert(tmp_path)
    (rule,) = parse(rule_with(ca_file=str(cert.ca_file)))
    assert rule.credentials.ca_file == str(cert.ca_file)


def test_disabled_rules_may_name_files_that_do_not_exist_yet():
    text = rule_with(
        client_secret=None,
        client_secret_file="/nonexistent/secret",
        ca_file="/nonexistent/ca.pem",
        is_disabled="true",
    )
    assert parse(text) == []
    with pytest.raises(RulesError, match="client_secret_file"):
        parse(text.replace("is_disabled: true", "is_disabled: false"))


def test_json_rules_files_read_like_yaml():
    document = yaml.safe_load(MINIMAL)
    as_json = parse(json.dumps(document))
    assert as_json == parse(MINIMAL)
    assert parse("{rules: []}") == []  # YAML flow style that is not JSON
    with pytest.raises(RulesError, match="not valid YAML at line 1"):
        parse('{"rules": [}')


@pytest.mark.parametrize(
    "text",
    [
        MINIMAL,
        "rules: [{name: a, methods: [GET, post], port: 8443, ratio: 1.5, on: yes, off: ~}]",
        "1: one\ntrue: yes\n2024-01-02: date\n",
        "a: !!str 123\nb: !!int '7'\nc: !!float '1'\nd: !!binary aGk=\ne: !!set {x}\n"
        "f: !!omap [{a: 1}]\n",
        "base: &b {token_url: u, scopes: s}\nrules:\n  - {<<: *b, name: r, =: v}\n",
        "x-shared: &s [1, two]\nrules: [{name: a, list: *s}, {name: b, list: *s}]\n",
        "'quoted': \"0x1F\"\nplain: 0x1F\nempty:\nkeys: {a: 1, a: 2}\n",
    ],
)
def test_yaml_documents_read_as_pyyaml_safe_loader_reads_them(text):
    from mitm_oauth.config.speedups import parse as _parse

    assert _parse(text) == yaml.safe_load(text)


def test_yaml_aliases_share_one_object_and_may_refer_to_themselves():
    from mitm_oauth.config.speedups import parse as _parse

    shared = _parse("a: &s [1]\nb: *s\n")
    assert shared["a"] is shared["b"]
    looped = _parse("&top {self: *top, name: loop}")
    assert looped["self"] is looped
    assert looped["name"] == "loop"


def test_a_yaml_key_that_cannot_be_a_key_is_a_clear_error():
    with pytest.raises(RulesError, match="not valid YAML at line 1"):
        parse("? [a, b]\n: list key\n")


def test_reading_rules_leaves_the_garbage_collector_as_it_was():
    import gc

    assert gc.isenabled()
    before = gc.get_freeze_count()  # Python 3.12 starts with some objects frozen
    parse(MINIMAL)
    assert gc.isenabled()
    assert gc.get_freeze_count() == before
    gc.disable()
    try:
        parse(MINIMAL)
        assert not gc.isenabled()
    finally:
        gc.enable()
    if before == 0:  # frozen by someone else: must stay frozen
        someone_elses = [object()]
        gc.freeze()
        try:
            frozen = gc.get_freeze_count()
            parse(MINIMAL)
            # (Frozen objects may die meanwhile, say from a full lru_cache: only no more.)
            assert gc.get_freeze_count() <= frozen
            assert not any(o is someone_elses for o in gc.get_objects())  # still frozen
        finally:
            gc.unfreeze()
        assert any(o is someone_elses for o in gc.get_objects())
    with pytest.raises(RulesError):
        parse("rules: [")
    assert gc.isenabled()


def test_a_reload_keeps_the_objects_of_unchanged_rules_and_credential_sets():
    creds = "token_url: 'https://idp.example/t', client_secret: s"
    three = f"""
    rules:
      - {{name: a, match: {{host: a.example}}, client_id: x, {creds}}}
      - {{name: b, match: {{host: b.example}}, client_id: x, {creds}}}
      - {{name: c, match: {{host: c.example}}, client_id: y, {creds}}}
    """
    previous = parse(three)
    edited = parse(three.replace("b.example", "b2.example").replace("client_id: y", "client_id: z"))
    a, b, c = keep_unchanged(edited, previous)
    assert a is previous[0]  # unchanged
    assert b == edited[1]  # changed, but with a's credential set
    assert b.credentials is previous[0].credentials
    assert c == edited[2]  # with a new credential set
    assert c.credentials is edited[2].credentials
    assert credential_sets([a, b, c]) == {a.credentials: ("a", "b"), c.credentials: ("c",)}


@pytest.mark.parametrize(
    "host",
    [
        "local\u200bhost",  # zero-width space
        "ex\u00adample.com",  # soft hyphen
        "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",  # full-width letters
        "bü\u200dcher.example",  # zero-width joiner
    ],
)
def test_hosts_are_not_folded_into_other_names(host):
    with pytest.raises(RulesError, match=r"match\.host"):
        parse(rule_with(match=f"{{host: '{host}'}}"))
