"""The command line: every subcommand, its exit codes, and that no secret is printed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml

from mitm_oauth.config.load import load_rules, parse_rules
from mitm_oauth.config.schema import SCHEMA, schema_json
from mitm_oauth.errors import RulesError
from mitm_oauth.matching.explain import explain_url
from mitm_oauth.matching.index import RuleIndex
from tests.conftest import CLIENT_SECRET, rule, rules
from tests.support.servers import Reply

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
SEED_SECRET = "YOUR-CLIENT-SECRET"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mitm_oauth", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
        check=False,
    )


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "mitm-oauth"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    assert "import-krakend" in result.stdout


def test_check_valid(tmp_path):
    path = write(
        tmp_path,
        rules(
            "  - {name: a, match: {host: a.example.com}, token_url: 'https://idp/t',"
            " client_id: x, client_secret: '${S}'}\n"
        ),
    )
    result = run("check", str(path), env={"S": CLIENT_SECRET})
    assert result.returncode == 0
    assert result.stdout == f"{path}: 1 rule(s), 1 credential set(s): valid\n"


def test_check_invalid_gives_the_start_up_message(tmp_path):
    path = write(tmp_path, "rules:\n  - name: billing\n    match: {host: a.com, prot: 1}\n")
    result = run("check", str(path))
    assert result.returncode == 1
    with pytest.raises(RulesError) as caught:
        load_rules(path)
    assert result.stderr == f"error: {caught.value}\n"
    assert "Traceback" not in result.stderr


def test_check_fetch_prints_a_redacted_summary_per_credential_set(tmp_path, idp, api, issuer):
    path = write(
        tmp_path,
        rules(
            rule("one", api, idp, client_id="shared"),
            rule("two", api, idp, client_id="shared"),
            rule("three", api, idp, client_id="other"),
        ),
    )
    result = run("check", "--fetch", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("3 rule(s), 2 credential set(s): valid")
    assert lines[1].startswith("rule one, two: HTTP 200 in ")
    assert "ok: token_type Bearer, expires_in 3600, scope (none), sha256:" in lines[1]
    assert lines[2].startswith("rule three: HTTP 200")
    assert len(idp.requests) == 2
    for text in [CLIENT_SECRET, *issuer.issued]:
        assert text not in result.stdout + result.stderr


def test_check_fetch_fails_with_the_endpoints_error(tmp_path, idp, api, issuer):
    issuer.reply = lambda r: Reply(
        401, {"error": "invalid_client", "error_description": f"bad {r.body.decode()}"}
    )
    path = write(tmp_path, rules(rule("one", api, idp, auth_style="params")))
    result = run("check", "--fetch", str(path))
    assert result.returncode == 1
    assert "rule one: HTTP 401 in " in result.stdout
    assert "FAILED: token endpoint answered HTTP 401, error='invalid_client'" in result.stdout
    assert CLIENT_SECRET not in result.stdout + result.stderr


def test_explain_matches_the_command(tmp_path):
    path = write(
        tmp_path,
        """\
        rules:
          - {name: v1, match: {host: api.example.com, path: /v1}, token_url: 'https://i/t',
             client_id: a, client_secret: s}
          - {name: all, match: {host: '*.example.com'}, token_url: 'https://i/t',
             client_id: a, client_secret: s}
        """,
    )
    url = "https://api.example.com/v1/items"
    result = run("explain", str(path), url, "--method", "POST")
    assert result.returncode == 0
    assert result.stdout == explain_url(RuleIndex(load_rules(path)), url, "POST").text + "\n"
    assert "→ rule v1" in result.stdout
    assert "all  matches too, but rule v1 is more specific" in result.stdout
    other = run("explain", str(path), "https://api.example.com/v1/../admin")
    assert "→ rule all" in other.stdout
    assert "could be read in more than one way" in other.stdout
    assert other.returncode == 0


def test_explain_exits_1_when_no_rule_matches_and_2_for_a_bad_url(tmp_path):
    """So that a script can tell "no token" from a typo (before: 0 for both)."""
    path = write(
        tmp_path,
        """\
        rules:
          - {name: v1, match: {host: api.example.com, path: /v1}, token_url: 'https://i/t',
             client_id: a, client_secret: s}
        """,
    )
    elsewhere = run("explain", str(path), "https://api.example.com/v2/items")
    assert elsewhere.returncode == 1
    assert "no rule matches: sent on without a token" in elsewhere.stdout
    typo = run("explain", str(path), "not a url")
    assert typo.returncode == 2
    assert "not an absolute http(s) URL" in typo.stdout
    ambiguous = run("explain", str(path), "https://api.example.com/v1/%2e%2e/admin")
    assert ambiguous.returncode == 1
    assert "could be read in more than one way" in ambiguous.stdout


@pytest.mark.parametrize(
    ("example", "accept", "warnings"),
    [
        ("krakend-basic.json", None, ["no backend host"]),
        ("krakend-auth0.json", "application/json", ["no backend host", "consider auth_style"]),
    ],
)
def test_import_krakend_on_the_seed_examples(example, accept, warnings):
    result = run("import-krakend", str(DATA / example))
    assert result.returncode == 0
    assert SEED_SECRET not in result.stdout + result.stderr
    for warning in warnings:
        assert warning in result.stderr
    document = yaml.safe_load(result.stdout)
    jsonschema.validate(document, SCHEMA)
    (converted,) = parse_rules(
        result.stdout, file="converted.yaml", environ={"ENDPOINT_CLIENT_SECRET": "s3cret"}
    )
    assert converted.credentials.client_id.reveal() == "YOUR-CLIENT-ID"
    assert converted.credentials.client_secret.reveal() == "s3cret"
    assert ("audience", ("YOUR-AUDIENCE",)) in converted.credentials.endpoint_params
    assert converted.accept == (accept or "application/json")
    assert "ENDPOINT_CLIENT_SECRET" in result.stderr


def test_import_krakend_full_config_and_foot_guns(tmp_path):
    config = {
        "version": 3,
        "host": ["https://default.example.com"],
        "endpoints": [
            {
                "endpoint": "/users/{id}",
                "backend": [
                    {
                        "host": ["http://users.internal:8080"],
                        "url_pattern": "/v2/users/{id}/orders",
                        "extra_config": {
                            "auth/client-credentials": {
                                "client_id": "a",
                                "client_secret": "hidden-1",
                                "token_url": "https://i/t",
                                "scopes": "read, ,write,",
                                "endpoint_params": {"scope": ["admin"]},
                            }
                        },
                    },
                    {"url_pattern": "/plain"},
                ],
            },
            {
                "endpoint": "/users/{id}",
                "backend": [
                    {
                        "url_pattern": "/x",
                        "extra_config": {
                            "auth/client-credentials": {
                                "client_id": "b",
                                "client_secret": "hidden-2",
                                "token_url": "https://i/t",
                            }
                        },
                    },
                ],
            },
        ],
    }
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(config))
    result = run("import-krakend", str(path))
    assert result.returncode == 0
    assert "hidden" not in result.stdout + result.stderr
    first, second = yaml.safe_load(result.stdout)["rules"]
    assert first["match"] == {
        "host": "users.internal",
        "port": 8080,
        "scheme": "http",
        "path": "/v2/users",
    }
    assert first["scopes"] == "read,write,admin"
    assert second["match"] == {"host": "default.example.com", "path": "/x"}
    assert first["name"] != second["name"]
    assert "'scope' in endpoint_params" in result.stderr
    assert "empty or padded entries" in result.stderr
    assert "plain http" in result.stderr


def test_import_krakend_without_client_credentials_fails(tmp_path):
    path = tmp_path / "krakend.json"
    path.write_text('{"endpoints": []}')
    result = run("import-krakend", str(path))
    assert result.returncode == 1
    assert "nothing to convert" in result.stderr


def test_schema_is_shipped_and_validates_the_example():
    result = run("schema")
    assert result.returncode == 0
    assert result.stdout == schema_json()
    assert (ROOT / "rules.schema.json").read_text() == result.stdout
    assert (
        (ROOT / "rules.yaml")
        .read_text()
        .startswith("# yaml-language-server: $schema=rules.schema.json\n")
    )
    example = yaml.safe_load((ROOT / "rules.yaml").read_text())
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(example, SCHEMA)


def test_schema_refuses_a_secret_given_twice():
    both = {"name": "a", "match": {"host": "x"}, "token_url": "https://i/t", "client_id": "a"}
    both |= {"client_secret": "s", "client_secret_file": "f"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"rules": [both]}, SCHEMA)


def test_import_krakend_hosts_and_shared_secrets(tmp_path):
    """Every host of a backend gets its rule; one secret used twice is one variable."""
    block = {"client_id": "a", "client_secret": "shared-hidden", "token_url": "https://i/t"}
    config = {
        "endpoints": [
            {
                "endpoint": "/orders",
                "backend": [
                    {
                        "host": ["https://a.example.com", "b.example.com:8443"],
                        "url_pattern": "/v1",
                        "extra_config": {"auth/client-credentials": block},
                    }
                ],
            },
            {
                "endpoint": "/stock",
                "backend": [
                    {
                        "host": ["https://c.example.com"],
                        "extra_config": {"auth/client-credentials": block},
                    }
                ],
            },
        ]
    }
    path = tmp_path / "krakend.json"
    path.write_text(json.dumps(config))
    result = run("import-krakend", str(path))
    assert result.returncode == 0
    assert "shared-hidden" not in result.stdout + result.stderr
    rules = yaml.safe_load(result.stdout)["rules"]
    assert [(r["name"], r["match"]["host"], r["match"].get("port")) for r in rules] == [
        ("orders", "a.example.com", None),
        ("orders-host2", "b.example.com", 8443),
        ("stock", "c.example.com", None),
    ]
    assert {r["client_secret"] for r in rules} == {"${ORDERS_CLIENT_SECRET}"}
    assert "host 'b.example.com:8443' has no scheme; taken as https" in result.stderr
    assert result.stderr.count("note: set ORDERS_CLIENT_SECRET") == 1
    assert "endpoint /stock, backend #1: client_secret" in result.stderr


def test_check_fetch_with_a_store_says_where_each_token_came_from(tmp_path, idp, api, issuer):
    path = write(tmp_path, rules(rule("one", api, idp)))
    store = f"sqlite:{tmp_path / 'oauth.db'}"
    first = run("check", "--fetch", "--store", store, str(path))
    second = run("check", "--fetch", "--store", store, str(path))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.splitlines()[1] == f"store: {store}: reachable, 0 token(s) stored"
    assert first.stdout.splitlines()[2].startswith("rule one: HTTP 200 in ")
    assert second.stdout.splitlines()[1] == f"store: {store}: reachable, 1 token(s) stored"
    assert second.stdout.splitlines()[2].startswith("rule one: from the store in ")
    assert len(idp.requests) == 1


def test_check_fetch_with_a_wrong_store_is_one_line(tmp_path, idp, api):
    path = write(tmp_path, rules(rule("one", api, idp)))
    result = run("check", "--fetch", "--store", "mongodb://db", str(path))
    assert result.returncode == 1
    assert result.stderr.startswith("error: oauth_store must be memory, sqlite:PATH")
    assert len(idp.requests) == 0
