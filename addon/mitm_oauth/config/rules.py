"""The rules file: which requests get a token, and from where.

`load_rules` turns `rules.yaml` into validated, immutable `Rule` objects or
raises `RulesError` naming the file, the rule and the field. Field names follow
KrakenD's `auth/client-credentials` block so a KrakenD config moves over as is.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import gc
import json
import os
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from ..errors import RulesError
from ..matching.hosts import is_ip_address, is_loopback, is_public_suffix, normalise_host
from ..oauth import assertion
from ..oauth.assertion import AssertionSettings
from ..oauth.response import HTTP_TOKEN
from ..oauth.tls import CertificateError, ClientCertificate, tls_context
from ..secret import Secret, SecretFile, SecretValue

AUTH_STYLES = (
    "auto",
    "header",
    "params",
    "client_secret_jwt",
    "private_key_jwt",
    "tls_client_auth",
    "self_signed_tls_client_auth",
)
AUTH_STYLE_ALIASES = {"client_secret_basic": "header", "client_secret_post": "params"}
"""The names OpenID Connect registration and most identity provider consoles use."""
SECRETLESS_STYLES = ("private_key_jwt", "tls_client_auth", "self_signed_tls_client_auth")
REQUEST_FORMATS = ("form", "json")
DEFAULT_HEADER_VALUE = "{token_type} {access_token}"
SCHEMES = ("http", "https")
DEFAULT_ACCEPT = "application/json"
CLIENT_AUTHORIZATION = ("replace", "keep")
DEFAULT_PURGE_ON_STATUS = frozenset({401})

RULE_KEYS = (
    "name",
    "match",
    "token_url",
    "client_id",
    "client_id_file",
    "client_secret",
    "client_secret_file",
    "scopes",
    "endpoint_params",
    "auth_style",
    "accept",
    "client_authorization",
    "token_type",
    "purge_on_status",
    "retry_on_401",
    "ca_file",
    "allow_insecure_token_url",
    "is_disabled",
    "assertion_alg",
    "assertion_audience",
    "assertion_lifetime",
    "private_key_file",
    "key_id",
    "client_cert_file",
    "client_key_file",
    "token_headers",
    "token_request_format",
    "header_name",
    "header_value",
)
ASSERTION_KEYS = (
    "assertion_alg", "assertion_audience", "assertion_lifetime", "private_key_file", "key_id"
)  # fmt: skip
MATCH_KEYS = ("host", "port", "scheme", "path", "methods")
# Parameters the token request sets itself: overriding them would silently
# change what is asked for (golang/oauth2 fails on `scope` at run time).
RESERVED_PARAMS = {
    "scope": "use the rule's 'scopes' field instead",
    "grant_type": "this addon only performs the client_credentials grant",
}
# Headers of a token request that the request itself decides.
RESERVED_TOKEN_HEADERS = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "te", "upgrade"}
)
# Headers that the injected token may not be put in: they frame the request or name its target.
RESERVED_INJECTED_HEADERS = RESERVED_TOKEN_HEADERS | {"accept", "cookie", "proxy-authorization"}

T = TypeVar("T")

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it: 20 times faster on large files."""
_ENV_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FIELD_VALUE = re.compile(r"[\x21-\x7e]([\x20\x09\x21-\x7e]*[\x21-\x7e])?")
"""An RFC 9110 field-value, visible ASCII only."""
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")
_GRAMMAR = re.compile(r"<[a-z ]+>|.{1,2}")
"""What PyYAML quotes that cannot be a secret: a token's name, a character or two."""


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
class Credentials:
    """Everything that decides which token the IdP issues, and how it is asked for.

    Rules with equal credentials share one cached token. `endpoint_params` is
    left out of `repr()` because KrakenD configs put client secrets there.
    """

    token_url: str
    client_id: SecretValue
    client_secret: SecretValue | None
    """None for the styles that need no shared secret (private_key_jwt, TLS client auth)."""
    auth_style: str = "auto"
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

    def __hash__(self) -> int:
        # Looked up in the cache on every request: hash the fields once.
        try:
            return self._hash  # type: ignore[has-type]
        except AttributeError:
            value = hash((self.token_url, self.client_id, self.client_secret, self.auth_style,
                          self.scopes, self.endpoint_params, self.ca_file, self.assertion,
                          self.client_certificate, self.token_headers,
                          self.request_format))  # fmt: skip
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


def load_rules(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> list[Rule]:
    """Read and validate a rules file; `${VAR}` references resolve from `environ`."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError("file not found", file=file) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RulesError(f"cannot read the file ({type(e).__name__})", file=file) from None
    return parse_rules(text, file=file, environ=os.environ if environ is None else environ)


def parse_rules(
    text: str, *, file: str, environ: Mapping[str, str], base: Path | None = None
) -> list[Rule]:
    """Validate the text of a rules file. Disabled rules are checked, then left out.

    Relative file paths in rules are relative to `base`, by default the rules
    file's folder, so that a rules file works from any working directory.
    """
    base = Path(file).parent if base is None else base
    with _collector_paused():
        try:
            return _parse_rules(text, file=file, environ=environ, base=base)
        except RulesError:
            raise
        except RecursionError:
            raise RulesError("nested too deeply to be a rules file", file=file) from None
        except Exception as e:  # an input nobody foresaw: still one line, never a traceback
            raise RulesError(f"cannot be read ({type(e).__name__})", file=file) from None


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a rules file is read.

    Reading builds a dozen container objects per rule; without the pause the
    collector scans the whole heap (mitmproxy's included) again and again:
    10,000 rules loaded in 2.2 s instead of 0.7 s, and because each scan holds
    the GIL, a reload in its thread stalled the proxy's traffic for up to
    0.5 s. Reference counting still frees what is not cyclic.

    Afterwards, what was made meanwhile goes straight to the oldest generation
    (freeze, then unfreeze) instead of being scanned young, generation after
    generation, on the event loop: a reload's worst request delay went from
    a median of 160 ms to 46 ms. Skipped when something else has frozen objects,
    which unfreezing would release (Python 3.12 itself freezes some at start-up).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def _parse_rules(text: str, *, file: str, environ: Mapping[str, str], base: Path) -> list[Rule]:
    try:
        document = _parse(text)
    except yaml.YAMLError as e:
        # Only the position: the YAML library's own message quotes the line,
        # which may hold a secret.
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RulesError(f"not valid YAML{where}: {_yaml_problem(e)}", file=file) from None
    if not isinstance(document, dict):
        raise RulesError("must be a mapping with a 'rules' list", file=file)
    for key in document:
        if key != "rules" and not str(key).startswith("x-"):
            raise RulesError(_unknown_key(key, ("rules",)), file=file)
    items = document.get("rules")
    if not isinstance(items, list):
        raise RulesError("'rules' must be a list of rules", file=file, field="rules")

    rules: list[Rule] = []
    seen: set[str] = set()
    shared: dict[Credentials, Credentials] = {}
    for position, item in enumerate(_taken(items)):
        reader = _RuleReader(item, file=file, position=position, environ=environ, base=base)
        rule, disabled = reader.safely_read()
        if rule.name in seen:
            raise reader.error("name", f"duplicate rule name '{rule.name}'")
        seen.add(rule.name)
        if disabled:
            continue
        rules.append(_sharing_credentials(rule, shared))
    return rules


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's description of a problem, without what it quotes from the file.

    It quotes tags and characters (`could not determine a constructor for the
    tag '!s3cret'`): a secret written in the file can start with `!`.
    """

    def keep_grammar(quoted: re.Match[str]) -> str:
        inner = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
        return quoted.group(0) if _GRAMMAR.fullmatch(inner) else ""

    problem = _QUOTED.sub(keep_grammar, getattr(error, "problem", None) or "syntax error")
    problem = " ".join(problem.split())
    if "tag" in problem:
        problem += " (a value that starts with '!' must be quoted)"
    elif "alias" in problem or "anchor" in problem:
        problem += " (a value that starts with '*' or '&' must be quoted)"
    return problem


def _sharing_credentials(rule: Rule, shared: dict[Credentials, Credentials]) -> Rule:
    """`rule` with the credential set in `shared` that equals its own, if any (else its own
    joins `shared`). Rules with equal credentials share one object: the token cache, probed
    on every request, then finds it by identity instead of comparing every field."""
    creds = shared.setdefault(rule.credentials, rule.credentials)
    return rule if creds is rule.credentials else replace(rule, credentials=creds)


def credential_sets(rules: Iterable[Rule]) -> dict[Credentials, tuple[str, ...]]:
    """Each credential set of `rules`, with the names of the rules that use it, in file order."""
    names: dict[Credentials, list[str]] = {}
    for rule in rules:
        names.setdefault(rule.credentials, []).append(rule.name)
    return {creds: tuple(n) for creds, n in names.items()}


def keep_unchanged(rules: Iterable[Rule], previous: Iterable[Rule]) -> list[Rule]:
    """`rules`, where a rule equal to one of `previous` is that object, and so is a credential set.

    A reload usually changes a rule or two. The others keep their objects, so
    the token cache still finds their credential sets by identity, and the
    swap on the event loop has little to free.
    """
    kept = {rule: rule for rule in previous}
    shared = {rule.credentials: rule.credentials for rule in kept}
    return [kept.get(rule) or _sharing_credentials(rule, shared) for rule in rules]


def _parse(text: str) -> Any:
    """YAML; a file that is JSON (a subset of YAML) is read by the much faster JSON parser.

    Generated rule sets are often JSON: 10,000 rules parse in tens of
    milliseconds instead of a second.
    """
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style looks alike; the YAML parser decides
    loader = _SafeLoader(text)
    node = None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _construct(node, loader, set())
        except _NotPlain:
            return loader.construct_document(node)
    finally:
        loader.dispose()
        _drop_gradually(node)


_STR, _MAP, _SEQ = (f"tag:yaml.org,2002:{kind}" for kind in ("str", "map", "seq"))


class _NotPlain(Exception):
    """The document holds more than scalars in lists and string-keyed mappings."""


def _construct(node: yaml.Node, loader: yaml.BaseLoader, seen: set[int]) -> Any:
    """What PyYAML's safe constructor makes of a plain document, built directly.

    Rules files are scalars in lists and string-keyed mappings; PyYAML builds
    them through generic machinery that took a third of the time of loading
    10,000 rules. Scalars other than strings are PyYAML's to build. Anything
    else (aliases, merge keys, other keys, tagged collections) raises
    `_NotPlain`, and PyYAML builds the whole document, as it always did.
    """
    kind, tag = type(node), node.tag
    if kind is yaml.ScalarNode:
        return node.value if tag == _STR else loader.construct_object(node)
    if id(node) in seen:  # an alias: PyYAML builds what it refers to once
        raise _NotPlain
    seen.add(id(node))
    if kind is yaml.SequenceNode and tag == _SEQ:
        return [_construct(item, loader, seen) for item in node.value]
    if kind is yaml.MappingNode and tag == _MAP and _string_keys(node):
        return {key.value: _construct(value, loader, seen) for key, value in node.value}
    raise _NotPlain


def _string_keys(node: yaml.MappingNode) -> bool:
    return all(type(key) is yaml.ScalarNode and key.tag == _STR for key, _ in node.value)


def _drop_gradually(document: yaml.Node | None) -> None:
    """Free a parsed YAML document a rule at a time rather than all at once.

    Freeing a whole tree is one call that holds the GIL throughout, and a
    reload reads its file in a thread beside the event loop: the nodes of
    10,000 rules, freed at once, delayed requests by 40 ms. Rule by rule, the
    interpreter can hand the GIL over in between.
    """
    for section in _take_children(document):  # "rules", the x- keys, and their values
        for _item in _take_children(section):  # a rule, say: freed when the next is taken
            pass


def _taken(items: list[Any]) -> Iterator[Any]:
    """A list's items, each taken out as it comes, so that each is freed once used.

    For the raw rules of a parsed document: see `_drop_gradually` for why.
    """
    items.reverse()
    while items:
        yield items.pop()


def _take_children(node: yaml.Node | None) -> Iterator[yaml.Node]:
    """Take a node's children out of it, one by one."""
    value = getattr(node, "value", None)
    if isinstance(value, list):  # a mapping's children come in (key, value) pairs
        for item in _taken(value):
            yield from item if isinstance(item, tuple) else (item,)


@functools.lru_cache(maxsize=1024)
def _shared(values: frozenset[T]) -> frozenset[T]:
    """One object for equal sets of schemes, methods or statuses.

    Thousands of rules repeat a handful of them; every object a rule keeps is
    one more for the garbage collector to scan, for as long as the rules live.
    """
    return values


@functools.lru_cache(maxsize=256)
def _token_url_problem(url: str, insecure_ok: bool) -> str | None:
    """What is wrong with a token URL, if anything (memoised: rules often share one)."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # "http://[127.0.0.1": an unclosed IPv6 literal, say
        return "is not a valid URL"
    if parts.scheme not in SCHEMES or not hostname:
        return "must be an absolute http:// or https:// URL"
    if parts.username or parts.password:
        return "must not carry credentials; use client_id/client_secret"
    if parts.fragment:
        return "must not have a fragment"
    if parts.scheme == "http" and not is_loopback(hostname) and not insecure_ok:
        return (
            "must use https: the client secret would cross the network in clear "
            "(set allow_insecure_token_url: true to accept that)"
        )
    return None


@functools.lru_cache(maxsize=64)
def _template_problem(template: str) -> str | None:
    """What is wrong with a `header_value` template, if anything."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        return f"not a valid template: {e}"
    fields = set()
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in ("access_token", "token_type") or spec or conversion:
            return (
                "the placeholders are {access_token} and {token_type}; write {{ and }} for braces"
            )
        fields.add(name)
    if "access_token" not in fields:
        return "must contain {access_token}"
    return None


def _unknown_key(key: object, allowed: tuple[str, ...]) -> str:
    name, rest = _key_parts(key)
    message = f"unknown key '{_key_label(key)}'"
    if rest and name in allowed:
        return f"{message} (write '{name}: value', with a space after the colon)"
    hint = difflib.get_close_matches(name, allowed, n=1)
    if hint:
        return f"{message} (did you mean '{hint[0]}'?)"
    return f"{message} (allowed: {', '.join(allowed)})"


def _key_label(key: object) -> str:
    """A key as a message may show it: what a name is made of, never what may follow.

    YAML reads `client_secret:s3cret`, `client_secret=s3cret` or
    `client_secret s3cret` in a flow mapping as one key, secret included.
    """
    name, rest = _key_parts(key)
    return f"{name}…" if rest else name


def _key_parts(key: object) -> tuple[str, str]:
    """(the leading name, at most 40 characters of letters, digits, `_`, `-`, `.`; the rest)."""
    text = str(key)
    name = _KEY_NAME.match(text)
    end = name.end() if name else 0
    return text[:end], text[end:]


class _RuleReader:
    """Reads one rule, so that every error knows which rule and field it is about."""

    def __init__(
        self, item: object, *, file: str, position: int, environ: Mapping[str, str], base: Path
    ) -> None:
        self.file = file
        self.base = base
        self.check_files = True
        self.position = position
        self.environ = environ
        self.label = f"#{position + 1}"
        if not isinstance(item, dict):
            raise self.error(None, "must be a mapping")
        self.item: dict[Any, Any] = item
        name = item.get("name")
        if isinstance(name, str) and name:
            self.label = f"'{name}' (#{position + 1})"

    def error(self, field: str | None, message: str) -> RulesError:
        return RulesError(message, file=self.file, rule=self.label, field=field)

    def safely_read(self) -> tuple[Rule, bool]:
        """`rule()`, with anything unforeseen turned into a RulesError naming the rule."""
        try:
            return self.rule()
        except RulesError:
            raise
        except RecursionError:
            raise self.error(None, "is nested too deeply to read") from None
        except Exception as e:
            raise self.error(None, f"cannot be read ({type(e).__name__})") from None

    def rule(self) -> tuple[Rule, bool]:
        self.check_keys(self.item, RULE_KEYS, prefix="")
        name = self.string("name", self.item.get("name"))
        if not _RULE_NAME.fullmatch(name):
            raise self.error("name", "use letters, digits, '_', '.' and '-' only")
        disabled = self.boolean("is_disabled")
        self.check_files = not disabled  # a disabled rule may name files that do not exist yet
        token_type = self.item.get("token_type")
        if token_type is not None and not HTTP_TOKEN.fullmatch(
            self.string("token_type", token_type)
        ):
            raise self.error("token_type", "must be an authentication scheme such as Bearer")
        client_authorization = self.choice("client_authorization", CLIENT_AUTHORIZATION)
        header_name = self.header_name()
        rule = Rule(
            name=name,
            match=self.match(),
            credentials=self.credentials(),
            accept=self.accept(),
            client_authorization=client_authorization,
            token_type=token_type,
            header_name=header_name,
            header_value=self.header_value(),
            purge_on_status=self.statuses("purge_on_status"),
            retry_on_401=self.boolean("retry_on_401"),
            position=self.position,
        )
        return rule, disabled

    # -- sections ---------------------------------------------------------

    def match(self) -> Match:
        section = self.item.get("match")
        if not isinstance(section, dict):
            raise self.error("match", "required: a mapping with at least 'host'")
        self.check_keys(section, MATCH_KEYS, prefix="match.")
        return Match(
            host=self.host(section.get("host")),
            schemes=self.schemes(section.get("scheme", "https")),
            port=self.port(section.get("port")),
            path=self.path(section.get("path", "/")),
            methods=self.methods(section.get("methods")),
        )

    def credentials(self) -> Credentials:
        token_url = self.token_url(self.item.get("token_url"))
        style = self.auth_style()
        client_secret = self.client_secret(style)
        ca_file = self.ca_file()
        return Credentials(
            token_url=token_url,
            client_id=self.secret_value("client_id"),
            client_secret=client_secret,
            auth_style=style,
            scopes=self.scopes(self.item.get("scopes")),
            endpoint_params=self.endpoint_params(self.item.get("endpoint_params")),
            ca_file=ca_file,
            assertion=self.assertion(style, client_secret),
            client_certificate=self.client_certificate(style),
            token_headers=self.token_headers(style),
            request_format=self.choice("token_request_format", REQUEST_FORMATS),
        )

    def auth_style(self) -> str:
        value = self.string("auth_style", self.item.get("auth_style", "auto"))
        value = AUTH_STYLE_ALIASES.get(value, value)
        if value not in AUTH_STYLES:
            choices = ", ".join((*AUTH_STYLES, *AUTH_STYLE_ALIASES))
            raise self.error("auth_style", f"must be one of {choices}")
        return value

    def client_secret(self, style: str) -> SecretValue | None:
        """Required, except by the styles that prove the client's identity without it."""
        if style not in SECRETLESS_STYLES:
            return self.secret_value("client_secret")
        for name in ("client_secret", "client_secret_file"):
            if name in self.item:
                raise self.error(name, f"not used with auth_style {style}: leave it out")
        return None

    def assertion(self, style: str, secret: SecretValue | None) -> AssertionSettings | None:
        """The settings of client_secret_jwt and private_key_jwt, checked against the key."""
        if style not in assertion.DEFAULT_ALGORITHM:
            for key in ASSERTION_KEYS:
                if key in self.item:
                    raise self.error(key, "only used with auth_style client_secret_jwt "
                                          "or private_key_jwt")  # fmt: skip
            return None
        allowed = (
            assertion.HMAC_ALGORITHMS if style == "client_secret_jwt" else assertion.KEY_ALGORITHMS
        )
        algorithm = self.string(
            "assertion_alg", self.item.get("assertion_alg", assertion.DEFAULT_ALGORITHM[style])
        )
        if algorithm not in allowed:
            raise self.error("assertion_alg", f"must be one of {', '.join(allowed)} for {style}")
        key_file = None
        if style == "private_key_jwt":
            if "private_key_file" not in self.item:
                raise self.error(
                    "private_key_file", "required by private_key_jwt: a PEM private key"
                )
            key_file = str(self.path_field("private_key_file"))
            if self.check_files:
                try:
                    assertion.load_signing_key(key_file, algorithm)
                except ValueError as e:
                    raise self.error("private_key_file", str(e)) from None
        elif "private_key_file" in self.item or "key_id" in self.item:
            name = "private_key_file" if "private_key_file" in self.item else "key_id"
            raise self.error(name, "client_secret_jwt signs with the client secret, not a key")
        elif secret is not None and (self.check_files or isinstance(secret, Secret)):
            try:
                assertion.check_secret_length(algorithm, secret.reveal())
            except ValueError as e:
                raise self.error("client_secret", str(e)) from None
        audience = self.item.get("assertion_audience")
        key_id = self.item.get("key_id")
        return AssertionSettings(
            algorithm=algorithm,
            audience=None if audience is None else self.string("assertion_audience", audience),
            lifetime=self.seconds(
                "assertion_lifetime", assertion.DEFAULT_LIFETIME, assertion.MAX_LIFETIME
            ),
            private_key_file=key_file,
            key_id=None if key_id is None else self.string("key_id", key_id),
        )

    def client_certificate(self, style: str) -> ClientCertificate | None:
        """Both files or neither; TLS client auth styles need them."""
        cert, key = self.item.get("client_cert_file"), self.item.get("client_key_file")
        if cert is None and key is None:
            if style in SECRETLESS_STYLES and style != "private_key_jwt":
                raise self.error("client_cert_file", f"required by auth_style {style}")
            return None
        if cert is None or key is None:
            missing = "client_cert_file" if cert is None else "client_key_file"
            raise self.error(missing, "give client_cert_file and client_key_file together")
        certificate = ClientCertificate(
            str(self.path_field("client_cert_file")), str(self.path_field("client_key_file"))
        )
        if self.check_files:
            try:
                tls_context(None, certificate)
            except CertificateError as e:
                name = "client_key_file" if e.path == certificate.key_file else "client_cert_file"
                raise self.error(name, str(e)) from None
        return certificate

    def token_headers(self, style: str) -> tuple[tuple[str, str], ...]:
        value = self.item.get("token_headers")
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.error("token_headers", "must map header names to values")
        headers = []
        for name, header_value in value.items():
            where = f"token_headers.{_key_label(name)}"
            if not isinstance(name, str) or not HTTP_TOKEN.fullmatch(name):
                raise self.error("token_headers", f"'{_key_label(name)}' is not a header name")
            lowered = name.lower()
            if lowered in RESERVED_TOKEN_HEADERS:
                raise self.error(where, "set by the token request itself")
            if lowered == "authorization" and style in ("auto", "header"):
                raise self.error(where, f"auth_style {style} sends its own Authorization")
            headers.append((name, self.header_line(where, header_value, secret=True)))
        return tuple(headers)

    def header_name(self) -> str:
        name = self.string("header_name", self.item.get("header_name", "Authorization"))
        if not HTTP_TOKEN.fullmatch(name):
            raise self.error("header_name", f"{name!r} is not a header name")
        if name.lower() in RESERVED_INJECTED_HEADERS:
            raise self.error("header_name", f"{name} cannot carry the token")
        return name

    def header_value(self) -> str:
        """A template with {access_token}, optionally {token_type}; `{{` `}}` for braces."""
        template = self.header_line(
            "header_value", self.item.get("header_value", DEFAULT_HEADER_VALUE)
        )
        problem = _template_problem(template)
        if problem:
            raise self.error("header_value", problem)
        return template

    def accept(self) -> str | None:
        if "accept" not in self.item:
            return DEFAULT_ACCEPT
        value = self.item["accept"]
        if value is None:
            return None
        return self.header_line("accept", value)

    # -- fields -----------------------------------------------------------

    def host(self, value: object) -> str:
        raw = self.string("match.host", value).strip()
        wildcard = raw.startswith("*.")
        base = raw[2:] if wildcard else raw
        if "*" in base or raw == "*":
            raise self.error(
                "match.host", "a wildcard must be the whole first label, as in '*.example.com'"
            )
        try:
            base = normalise_host(base)
        except ValueError as e:
            raise self.error("match.host", f"'{raw}' is {e}") from None
        if not wildcard:
            return base
        if is_ip_address(base):
            raise self.error("match.host", "a wildcard cannot be combined with an IP address")
        if is_public_suffix(base):
            raise self.error(
                "match.host",
                f"'{raw}' would match every site under the public suffix '{base}'",
            )
        return f"*.{base}"

    def schemes(self, value: object) -> frozenset[str]:
        values = value if isinstance(value, list) else [value]
        schemes = {self.string("match.scheme", v).lower() for v in values}
        if not schemes or not schemes <= set(SCHEMES):
            raise self.error("match.scheme", "must be https, http, or a list of both")
        return _shared(frozenset(schemes))

    def port(self, value: object) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise self.error("match.port", "must be a number from 1 to 65535")
        return value

    def path(self, value: object) -> str:
        path = self.string("match.path", value)
        if not path.startswith("/"):
            raise self.error("match.path", "must start with '/'")
        if "?" in path or "#" in path:
            raise self.error("match.path", "is a path prefix: no query or fragment")
        # "/v1/" and "/v1" mean the same prefix: both match "/v1" and "/v1/…".
        return path.rstrip("/") or "/"

    def methods(self, value: object) -> frozenset[str] | None:
        if value is None:
            return None
        values = value if isinstance(value, list) else [value]
        methods = {self.string("match.methods", v).upper() for v in values}
        if not methods or not all(HTTP_TOKEN.fullmatch(m) for m in methods):
            raise self.error("match.methods", "must be a list of HTTP methods")
        return _shared(frozenset(methods))

    def token_url(self, value: object) -> str:
        """An https URL; http only for loopback or with `allow_insecure_token_url`."""
        url = self.string("token_url", value)
        problem = _token_url_problem(url, self.boolean("allow_insecure_token_url"))
        if problem:
            raise self.error("token_url", problem)
        return url

    def secret_value(self, field: str) -> SecretValue:
        """Exactly one of `field` (in the file or environment) or `field_file` (read at use)."""
        file_field = f"{field}_file"
        if field in self.item and file_field in self.item:
            raise self.error(file_field, f"give {field} or {file_field}, not both")
        if file_field not in self.item:
            is_secret = field == "client_secret"
            return Secret(self.string(field, self.item.get(field), secret=is_secret))
        secret_file = SecretFile(str(self.path_field(file_field)))
        try:
            if self.check_files:
                secret_file.reveal()
        except ValueError as e:
            raise self.error(file_field, str(e)) from None
        return secret_file

    def ca_file(self) -> str | None:
        if self.item.get("ca_file") is None:
            return None
        path = str(self.path_field("ca_file"))
        try:
            if self.check_files:
                tls_context(path, None)
        except ValueError as e:
            raise self.error("ca_file", str(e)) from None
        return path

    def seconds(self, field: str, default: int, maximum: int) -> int:
        value = self.item.get(field, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
            raise self.error(field, f"must be a number of seconds from 1 to {maximum}")
        return value

    def header_line(self, field: str, value: object, *, secret: bool = False) -> str:
        """An RFC 9110 field value in ASCII: HTTP libraries refuse anything else, quoting it."""
        line = self.string(field, value, secret=secret)
        if any(c in line for c in "\r\n\0"):
            raise self.error(field, "must be a single header line")
        if not _FIELD_VALUE.fullmatch(line):
            raise self.error(
                field,
                "must be printable ASCII, with no space or tab at its start or end "
                "(an HTTP header value)",
            )
        return line

    def statuses(self, field: str) -> frozenset[int]:
        value = self.item.get(field, sorted(DEFAULT_PURGE_ON_STATUS))
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599 for v in value
        ):
            raise self.error(field, "must be a list of HTTP statuses from 400 to 599")
        return _shared(frozenset(value))

    def scopes(self, value: object) -> tuple[str, ...]:
        """KrakenD's comma string or a YAML list; items trimmed, empties and repeats dropped."""
        if value is None:
            return ()
        if isinstance(value, str):
            items = self.substitute("scopes", value).split(",")
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            items = [self.substitute("scopes", v) for v in value]
        else:
            raise self.error("scopes", "must be a comma-separated string or a list of strings")
        return tuple(dict.fromkeys(s.strip() for s in items if s.strip()))

    def endpoint_params(self, value: object) -> tuple[tuple[str, tuple[str, ...]], ...]:
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.error("endpoint_params", "must map parameter names to lists of values")
        params = []
        for name, values in value.items():
            where = f"endpoint_params.{_key_label(name)}"
            if not isinstance(name, str) or not name:
                raise self.error("endpoint_params", "parameter names must be strings")
            if name in RESERVED_PARAMS:
                raise self.error(where, f"not allowed here: {RESERVED_PARAMS[name]}")
            items = values if isinstance(values, list) else [values]
            if not items:
                raise self.error(where, "needs at least one value")
            params.append((name, tuple(self.string(where, v, secret=True) for v in items)))
        return tuple(params)

    # -- helpers ----------------------------------------------------------

    def boolean(self, field: str) -> bool:
        value = self.item.get(field, False)
        if not isinstance(value, bool):
            raise self.error(field, "must be true or false")
        return value

    def choice(self, field: str, choices: tuple[str, ...]) -> str:
        value = self.string(field, self.item.get(field, choices[0]))
        if value not in choices:
            raise self.error(field, f"must be one of {', '.join(choices)}")
        return value

    def path_field(self, field: str) -> Path:
        try:
            path = Path(self.string(field, self.item.get(field))).expanduser()
        except RuntimeError:  # ~name of a user this machine does not know
            raise self.error(field, "names the home folder of an unknown user") from None
        return path if path.is_absolute() else self.base / path

    def check_keys(self, section: dict[Any, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in section:
            if key not in allowed:
                raise self.error(f"{prefix}{_key_label(key)}", _unknown_key(key, allowed))

    def string(self, field: str, value: object, *, secret: bool = False) -> str:
        if value is None:
            raise self.error(field, "required")
        if not isinstance(value, str):
            kind = "a value" if secret else repr(value)
            raise self.error(field, f"must be a string, not {kind} (quote it in YAML)")
        result = self.substitute(field, value)
        if not result:
            raise self.error(field, "must not be empty")
        return result

    def substitute(self, field: str, value: str) -> str:
        """Expand `${VAR}` and `${VAR:-default}`; `$${` stands for a literal `${`."""
        if "$" not in value:
            return value

        def expand(m: re.Match[str]) -> str:
            if m.group(0) == "$${":
                return "${"
            name, default = m.group(1), m.group(2)
            found = self.environ.get(name)
            if found:
                return found
            if default is not None:
                return default
            if found is None:
                raise self.error(field, f"environment variable {name} is not set")
            raise self.error(field, f"environment variable {name} is empty")

        return _ENV_REFERENCE.sub(expand, value)
