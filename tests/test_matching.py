"""Matching a destination to the most specific rule."""

from __future__ import annotations

import pytest

from mitm_oauth.matching.index import (
    REMEMBERED,
    AmbiguousRequest,
    Destination,
    RuleIndex,
    canonical_path,
    path_has_prefix,
)
from mitm_oauth.model import Credentials, Match, Rule
from mitm_oauth.secret import Secret

CREDS = Credentials("https://idp.example/token", Secret("id"), Secret("secret"))


def rule(name: str, host: str, position: int = 0, **match: object) -> Rule:
    return Rule(name, Match(host=host, **match), CREDS, position=position)  # type: ignore[arg-type]


def dest(url_host: str = "api.example.com", path: str = "/", **kw: object) -> Destination:
    values = {"scheme": "https", "port": 443, "method": "GET"} | kw
    return Destination.of(host=url_host, path=path, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        ("/", "/", True),
        ("/", "/anything", True),
        ("/v1", "/v1", True),
        ("/v1", "/v1/", True),
        ("/v1", "/v1/x", True),
        ("/v1", "/v10", False),
        ("/v1", "/v", False),
        ("/v1", "/", False),
        ("/v1/x", "/v1/x/y", True),
        ("/v1/x", "/v1/xy", False),
    ],
)
def test_path_prefix_respects_segments(prefix, path, expected):
    assert path_has_prefix(path, prefix) is expected


def test_destination_normalises_host_and_drops_query():
    d = Destination.of("HTTPS", "API.Example.COM.", 443, "/v1/x?token=1", "get")
    assert d == Destination("https", "api.example.com", 443, "/v1/x", "GET")


def test_no_rules_no_match():
    assert RuleIndex([]).match(dest()) is None


@pytest.mark.parametrize(
    ("host", "matches"),
    [
        ("a.example.com", True),
        ("A.EXAMPLE.COM.", True),
        ("example.com", False),
        ("a.b.example.com", False),
        ("aexample.com", False),
        ("a.example.com.evil.net", False),
    ],
)
def test_wildcard_matches_exactly_one_label(host, matches):
    index = RuleIndex([rule("w", "*.example.com")])
    assert (index.match(dest(host)) is not None) is matches


@pytest.mark.parametrize(
    ("d", "matches"),
    [
        (dest(path="/v1"), True),
        (dest(path="/v1", scheme="http", port=443), False),
        (dest(path="/v1", port=8443), False),
        (dest(path="/v1", method="DELETE"), False),
        (dest(path="/v1", method="post"), True),
        (dest(path="/v10"), False),
        (dest(path="/v1/items?x=1"), True),
        (dest("other.example.com", path="/v1"), False),
    ],
)
def test_each_match_field_must_hold(d, matches):
    index = RuleIndex(
        [
            rule(
                "r",
                "api.example.com",
                schemes=frozenset({"https"}),
                port=443,
                path="/v1",
                methods=frozenset({"GET", "POST"}),
            )
        ]
    )
    assert (index.match(d) is not None) is matches


def test_default_scheme_is_https_only():
    index = RuleIndex([rule("r", "api.example.com")])
    assert index.match(dest(scheme="https")) is not None
    assert index.match(dest(scheme="http", port=80)) is None


def test_most_specific_rule_wins():
    rules = [
        rule("wild-root", "*.example.com", position=0),
        rule("wild-deep", "*.example.com", position=1, path="/v1/admin"),
        rule("exact-root", "api.example.com", position=2),
        rule("exact-v1", "api.example.com", position=3, path="/v1"),
        rule("exact-v1-again", "api.example.com", position=4, path="/v1"),
    ]
    index = RuleIndex(rules)
    # exact host beats a wildcard, even one with a longer path
    assert index.match(dest(path="/v1/admin")).name == "exact-v1"
    # then the longest path, then file order
    assert index.match(dest(path="/v1/x")).name == "exact-v1"
    assert index.match(dest(path="/other")).name == "exact-root"
    assert index.match(dest("www.example.com", path="/v1/admin/x")).name == "wild-deep"
    assert index.match(dest("www.example.com", path="/v1")).name == "wild-root"


def test_exact_rule_that_does_not_apply_falls_back_to_wildcard():
    index = RuleIndex(
        [
            rule("exact-post", "api.example.com", methods=frozenset({"POST"})),
            rule("wild", "*.example.com", position=1),
        ]
    )
    assert index.match(dest(method="POST")).name == "exact-post"
    assert index.match(dest(method="GET")).name == "wild"


def test_index_of_many_rules_finds_each():
    rules = [rule(f"r{i}", f"host{i}.example.com", position=i) for i in range(1000)]
    index = RuleIndex(rules)
    assert len(index) == 1000
    assert index.match(dest("host737.example.com")).name == "r737"
    assert index.match(dest("host1000.example.com")) is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/v1/x", "/v1/x"),
        ("/v1/x?q=/../admin", "/v1/x"),
        ("/%76%31/x", "/v1/x"),
        ("/v1/a%20b", "/v1/a%20b"),
        ("/v1/a%2fb", None),
        ("/v1/a%5Cb", None),
        ("/v1/a%3bb", None),
        ("/v1/../admin", None),
        ("/v1/%2e%2e/admin", None),
        ("/v1/./x", None),
        ("/v1/..", None),
        ("//v1/x", None),
        ("/v1//x", None),
        ("/v1;a=b/x", None),
        ("/v1\\..\\admin", None),
        ("/v1/caf\u00e9", None),
        ("/v1/%zz", None),
        ("/v1/%", None),
        ("v1/x", None),
        ("http://api.example.com/v1", None),
        ("*", "*"),
    ],
)
def test_canonical_path(target, expected):
    assert canonical_path(target) == expected


def test_ambiguous_paths_only_match_rules_for_the_whole_host():
    index = RuleIndex(
        [rule("v1", "api.example.com", path="/v1"), rule("all", "*.example.com", position=1)]
    )
    assert index.match(dest(path="/v1/x")).name == "v1"
    assert index.match(dest(path="/v1/../admin")).name == "all"
    assert (
        RuleIndex([rule("v1", "api.example.com", path="/v1")]).match(dest(path="/v1/%2e%2e/admin"))
        is None
    )


@pytest.mark.parametrize("method", ["TRACE", "trace", "TRACK", "CONNECT"])
def test_echoing_methods_never_match(method):
    index = RuleIndex([rule("any", "api.example.com")])
    assert index.match(dest(method=method)) is None


@pytest.mark.parametrize(
    "names",
    [
        ["api.example.com"],
        ["API.example.com."],
        ["api.example.com:443"],
        ["api.example.com", "api.example.com:443"],
    ],
)
def test_other_names_that_agree(names):
    d = Destination.of("https", "api.example.com", 443, "/", "GET", other_names=names)
    assert d.host == "api.example.com"


@pytest.mark.parametrize(
    "names",
    [
        ["evil.example.net"],
        ["api.example.com.evil.net"],
        ["api.example.com:8443"],
        ["api.example.com", "other.example.com"],
        ["api.example.com:x"],
        ["[::1]"],
    ],
)
def test_other_names_that_disagree_make_the_request_ambiguous(names):
    with pytest.raises(AmbiguousRequest):
        Destination.of("https", "api.example.com", 443, "/", "GET", other_names=names)


def test_ipv6_destinations():
    d = Destination.of("https", "::1", 443, "/", "GET", other_names=["[::1]:443"])
    assert d.host == "::1"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("127.000.000.001", None),
        ("a%2eexample.com", None),
        ("a..example.com", None),
        ("", None),
    ],
)
def test_destination_hosts(host, expected):
    if expected is None:
        with pytest.raises(AmbiguousRequest):
            Destination.of("https", host, 443, "/", "GET")
    else:
        assert Destination.of("https", host, 443, "/", "GET").host == expected


def test_what_the_index_remembers_is_bounded_and_right():
    index = RuleIndex([rule("v1", "api.example.com", path="/v1")])
    for n in range(REMEMBERED + 10):
        assert index.match(dest(path=f"/v1/{n}")) is index.rules[0]
        assert index.match(dest(path=f"/v2/{n}")) is None
    assert len(index._known) <= REMEMBERED
    assert index.match(dest(path="/v1/0")) is index.rules[0]


def test_a_dismantled_index_holds_no_rule():
    index = RuleIndex([rule("a", "api.example.com"), rule("w", "*.example.org")])
    assert index.match(dest()) is not None
    index.dismantle()
    assert len(index) == 0
    assert index.credential_sets == {}
    assert index.match(dest()) is None
    assert index.match(dest("x.example.org")) is None


@pytest.mark.parametrize(
    "name",
    [
        "api.exam\u200bple.com",  # zero-width space: IDNA 2003 drops it, servers do not
        "api.exam\u00adple.com",  # soft hyphen
        "\uff41\uff50\uff49.example.com",  # full-width letters
        "api.example.\u212aom",  # Kelvin sign: lower() makes it an ASCII "k"
        "api.example.com:\uff14\uff14\uff13",  # full-width digits
        "api.example.com:٤٤٣",  # Arabic-Indic digits
        "api.example.com:²",
        "api.example.com:" + "4" * 5000,
        "api.example.com:65979",
        "api.example.com:+443",
    ],
)
def test_names_are_compared_as_a_server_reads_them(name):
    with pytest.raises(AmbiguousRequest) as raised:
        Destination.of("https", "api.example.com", 443, "/", "GET", other_names=[name])
    assert raised.value.host == "api.example.com"
    assert len(str(raised.value)) < 200


def test_a_destination_is_the_host_the_resolver_is_asked_for():
    # mitmproxy reads `xn--zca.com` (ß.com) from a request line as "ß.com"; the socket
    # layer then resolves "ss.com" (IDNA 2003), so that is where the request goes.
    assert Destination.of("https", "ß.com", 443, "/", "GET").host == "ss.com"
    with pytest.raises(AmbiguousRequest):
        Destination.of("https", "ß.com", 443, "/", "GET", other_names=["xn--zca.com"])
    assert dest("bücher.example", other_names=["XN--BCHER-KVA.example:443"]).host == (
        "xn--bcher-kva.example"
    )


def test_an_unreadable_destination_names_no_host():
    with pytest.raises(AmbiguousRequest) as raised:
        Destination.of("https", "a..example.com", 443, "/", "GET", other_names=["x"])
    assert raised.value.host is None


def test_the_index_knows_which_hosts_it_covers():
    index = RuleIndex([rule("a", "api.example.com"), rule("w", "*.example.org")])
    assert index.covers("api.example.com")
    assert index.covers("x.example.org")
    assert not index.covers("example.org")
    assert not index.covers("x.y.example.org")
    assert not index.covers("other.example.com")
