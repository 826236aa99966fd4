"""Property tests: every input gets a result or the parser's own error, never a crash."""

from __future__ import annotations

import contextlib
import json
import math

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mitm_oauth.config.load import parse_rules
from mitm_oauth.errors import RulesError, TokenError
from mitm_oauth.matching.hosts import connect_host, normalise_host, wire_host
from mitm_oauth.matching.index import AmbiguousRequest, Destination, canonical_path
from mitm_oauth.oauth.response import MAX_EXPIRES_IN, parse_token_response

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
keys = st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=3),
    max_leaves=12,
)
token_fields = st.fixed_dictionaries(
    {},
    optional={
        "access_token": json_values | st.text(min_size=1, max_size=60),
        "token_type": json_values | st.sampled_from(["bearer", "Bearer", "mac", "", "BEARER"]),
        "expires_in": json_values | st.sampled_from(["3600", "NaN", "-1", "1e999", " 7 "]),
        "scope": json_values,
        "error": json_values | st.sampled_from(["invalid_client", ""]),
        "error_description": json_values,
    },
)
# How long an example takes measures the machine, not the code: on a shared two-core runner
# with four workers, examples that take a millisecond took up to 630 ms, past hypothesis's
# 200 ms deadline, and its replay (fast again) turned that into a FlakyFailure. The
# properties are what these tests check; slowness is the benchmarks' business.
fuzz = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "text/html",
        "",
    ]
)


def check_token_or_error(status: int, content_type: str, body: bytes) -> None:
    try:
        token = parse_token_response(status, content_type, body)
    except TokenError:
        return
    assert 200 <= status < 300
    value = token.access_token.reveal()
    assert value
    assert all(0x21 <= ord(c) <= 0x7E for c in value)
    assert token.expires_in is None or 1 <= token.expires_in <= MAX_EXPIRES_IN
    assert token.token_type
    assert " " not in token.token_type


@settings(fuzz, max_examples=400)
@given(st.integers(100, 599), content_types, token_fields)
def test_token_responses_as_json(status, content_type, fields):
    body = json.dumps(fields, allow_nan=True).encode()
    check_token_or_error(status, content_type, body)


@settings(fuzz, max_examples=300)
@given(st.integers(100, 599), content_types, st.binary(max_size=300))
def test_token_responses_as_any_bytes(status, content_type, body):
    check_token_or_error(status, content_type, body)


@fuzz
@given(json_values)
def test_expires_in_never_yields_a_non_finite_or_negative_lifetime(value):
    body = json.dumps({"access_token": "abc", "expires_in": value}, allow_nan=True).encode()
    try:
        token = parse_token_response(200, "application/json", body)
    except TokenError:
        return
    assert token.expires_in is None or (math.isfinite(token.expires_in) and token.expires_in > 0)


rule_documents = st.fixed_dictionaries(
    {
        "rules": st.lists(
            st.fixed_dictionaries(
                {"name": json_values | st.sampled_from(["a", "b"])},
                optional={
                    "match": json_values
                    | st.fixed_dictionaries(
                        {
                            "host": json_values
                            | st.sampled_from(
                                [
                                    "a.example.com",
                                    "*.example.com",
                                    "*.com",
                                    "127.0.0.1",
                                    "bücher.de",
                                ]
                            )
                        },
                        optional={
                            "port": json_values,
                            "scheme": json_values,
                            "path": json_values,
                            "methods": json_values,
                            "extra": json_values,
                        },
                    ),
                    "token_url": json_values
                    | st.sampled_from(["https://idp/t", "http://idp/t", "http://127.0.0.1/t"]),
                    "client_id": json_values,
                    "client_secret": json_values | st.just("${SECRET}"),
                    "scopes": json_values,
                    "endpoint_params": json_values,
                    "auth_style": json_values,
                    "accept": json_values,
                    "purge_on_status": json_values,
                    "retry_on_401": json_values,
                    "token_type": json_values,
                },
            ),
            max_size=3,
        )
    }
)


@settings(fuzz, max_examples=400)
@given(rule_documents)
def test_rules_files_load_or_fail_with_a_located_error(document):
    text = yaml.safe_dump(document, allow_unicode=True)
    try:
        rules = parse_rules(text, file="rules.yaml", environ={"SECRET": "s"})
    except RulesError as e:
        error = str(e)
    else:
        assert len({r.name for r in rules}) == len(rules)
        return
    assert error.startswith("rules.yaml")


@settings(fuzz, max_examples=300)
@given(st.text(max_size=200))
def test_rules_files_of_any_text(text):
    with contextlib.suppress(RulesError):
        parse_rules(text, file="rules.yaml", environ={})


@fuzz
@given(st.text(max_size=80))
def test_canonical_paths_are_unambiguous(target):
    path = canonical_path(target)
    if path is None or path == "*":
        return
    segments = path.split("/")
    assert path.startswith("/")
    assert "." not in segments
    assert ".." not in segments
    assert "//" not in path
    assert ";" not in path
    assert canonical_path(path) == path  # canonical forms are fixed points


@fuzz
@given(st.text(max_size=60))
def test_hosts_normalise_or_fail_cleanly(host):
    try:
        normalised = normalise_host(host)
    except ValueError:
        return
    assert normalised == normalise_host(normalised)
    assert normalised.isascii()
    assert normalised == normalised.lower()


@fuzz
@given(st.text(max_size=60))
def test_names_a_request_gives_are_ascii_or_refused(name):
    try:
        host = wire_host(name)
    except ValueError:
        return
    assert name.isascii()
    assert host == wire_host(host) == host.lower()


@fuzz
@given(st.text(max_size=40), st.lists(st.text(max_size=40), max_size=3), st.text(max_size=40))
def test_destinations_build_or_are_ambiguous(host, names, path):
    with contextlib.suppress(AmbiguousRequest):
        dest = Destination.of("https", host, 443, path, "GET", other_names=names)
        assert dest.host == connect_host(host)
        assert all(name.isascii() for name in names)
