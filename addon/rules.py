"""The rules file: which requests get a token, and from where.

`load_rules` turns `rules.yaml` into validated, immutable `Rule` objects or
raises `RulesError` naming the file, the rule and the field. Field names follow
KrakenD's `auth/client-credentials` block so a KrakenD config moves over as is.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from addon.errors import RulesError
from addon.secret import Secret

AUTH_STYLES = ("auto", "header", "params")
SCHEMES = ("http", "https")
DEFAULT_ACCEPT = "application/json"

RULE_KEYS = (
    "name",
    "match",
    "token_url",
    "client_id",
    "client_secret",
    "scopes",
    "endpoint_params",
    "auth_style",
    "accept",
    "is_disabled",
)
MATCH_KEYS = ("host", "port", "scheme", "path", "methods")
# Parameters the token request sets itself: overriding them would silently
# change what is asked for (golang/oauth2 fails on `scope` at run time).
RESERVED_PARAMS = {
    "scope": "use the rule's 'scopes' field instead",
    "grant_type": "this addon only performs the client_credentials grant",
}

_ENV_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_HOST_LABEL = re.compile(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?")
_HTTP_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


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
    """Everything that decides which token the IdP issues.

    Rules with equal credentials share one cached token. `endpoint_params` is
    left out of `repr()` because KrakenD configs put client secrets there.
    """

    token_url: str
    client_id: str
    client_secret: Secret
    auth_style: str = "auto"
    scopes: tuple[str, ...] = ()
    endpoint_params: tuple[tuple[str, tuple[str, ...]], ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class Rule:
    name: str
    match: Match
    credentials: Credentials
    accept: str | None = DEFAULT_ACCEPT
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


def parse_rules(text: str, *, file: str, environ: Mapping[str, str]) -> list[Rule]:
    """Validate the text of a rules file. Disabled rules are checked, then left out."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        # Only the position: the YAML library's own message quotes the line,
        # which may hold a secret.
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or "syntax error"
        raise RulesError(f"not valid YAML{where}: {problem}", file=file) from None
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
    for position, item in enumerate(items):
        reader = _RuleReader(item, file=file, position=position, environ=environ)
        rule, disabled = reader.rule()
        if rule.name in seen:
            raise reader.error("name", f"duplicate rule name '{rule.name}'")
        seen.add(rule.name)
        if not disabled:
            rules.append(rule)
    return rules


def _unknown_key(key: object, allowed: tuple[str, ...]) -> str:
    message = f"unknown key '{key}'"
    hint = difflib.get_close_matches(str(key), allowed, n=1)
    if hint:
        return f"{message} (did you mean '{hint[0]}'?)"
    return f"{message} (allowed: {', '.join(allowed)})"


class _RuleReader:
    """Reads one rule, so that every error knows which rule and field it is about."""

    def __init__(
        self, item: object, *, file: str, position: int, environ: Mapping[str, str]
    ) -> None:
        self.file = file
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

    def rule(self) -> tuple[Rule, bool]:
        self.check_keys(self.item, RULE_KEYS, prefix="")
        name = self.string("name", self.item.get("name"))
        if not _RULE_NAME.fullmatch(name):
            raise self.error("name", "use letters, digits, '_', '.' and '-' only")
        disabled = self.item.get("is_disabled", False)
        if not isinstance(disabled, bool):
            raise self.error("is_disabled", "must be true or false")
        rule = Rule(
            name=name,
            match=self.match(),
            credentials=self.credentials(),
            accept=self.accept(),
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
        client_id = self.string("client_id", self.item.get("client_id"))
        secret = self.string("client_secret", self.item.get("client_secret"), secret=True)
        auth_style = self.string("auth_style", self.item.get("auth_style", "auto"))
        if auth_style not in AUTH_STYLES:
            raise self.error("auth_style", f"must be one of {', '.join(AUTH_STYLES)}")
        return Credentials(
            token_url=token_url,
            client_id=client_id,
            client_secret=Secret(secret),
            auth_style=auth_style,
            scopes=self.scopes(self.item.get("scopes")),
            endpoint_params=self.endpoint_params(self.item.get("endpoint_params")),
        )

    def accept(self) -> str | None:
        if "accept" not in self.item:
            return DEFAULT_ACCEPT
        value = self.item["accept"]
        if value is None:
            return None
        accept = self.string("accept", value)
        if any(c in accept for c in "\r\n\0"):
            raise self.error("accept", "must be a single header line")
        return accept

    # -- fields -----------------------------------------------------------

    def host(self, value: object) -> str:
        raw = self.string("match.host", value).strip().lower()
        if raw.endswith("."):
            raw = raw[:-1]
        wildcard = raw.startswith("*.")
        base = raw[2:] if wildcard else raw
        if "*" in base:
            raise self.error(
                "match.host", "a wildcard must be the whole first label, as in '*.example.com'"
            )
        if base.startswith("[") and base.endswith("]"):
            base = base[1:-1]
        try:
            ipaddress.ip_address(base)
        except ValueError:
            pass
        else:
            if wildcard:
                raise self.error("match.host", "a wildcard cannot be combined with an IP address")
            return base
        try:
            base = base.encode("idna").decode("ascii")
        except UnicodeError:
            raise self.error("match.host", f"'{raw}' is not a valid host name") from None
        labels = base.split(".")
        if not all(_HOST_LABEL.fullmatch(label) for label in labels):
            raise self.error("match.host", f"'{raw}' is not a valid host name")
        if wildcard and len(labels) < 2:
            raise self.error("match.host", f"'{raw}' is too broad: name at least two labels")
        return f"*.{base}" if wildcard else base

    def schemes(self, value: object) -> frozenset[str]:
        values = value if isinstance(value, list) else [value]
        schemes = {self.string("match.scheme", v).lower() for v in values}
        if not schemes or not schemes <= set(SCHEMES):
            raise self.error("match.scheme", "must be https, http, or a list of both")
        return frozenset(schemes)

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
        if not methods or not all(_HTTP_TOKEN.fullmatch(m) for m in methods):
            raise self.error("match.methods", "must be a list of HTTP methods")
        return frozenset(methods)

    def token_url(self, value: object) -> str:
        url = self.string("token_url", value)
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise self.error("token_url", "must be an absolute http:// or https:// URL")
        if parts.username or parts.password:
            raise self.error("token_url", "must not carry credentials; use client_id/client_secret")
        if parts.fragment:
            raise self.error("token_url", "must not have a fragment")
        return url

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
            where = f"endpoint_params.{name}"
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

    def check_keys(self, section: dict[Any, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in section:
            if key not in allowed:
                raise self.error(f"{prefix}{key}", _unknown_key(key, allowed))

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
