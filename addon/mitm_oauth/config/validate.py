"""One rule of a rules file, read into the model or refused with the rule and field named.

Reading is pure: it looks at the parsed document and the environment, never at
files (`files.check` does that, as a step of its own). Which keys exist, their
defaults and the simple kinds of value come from `fields.FIELDS`.
"""

from __future__ import annotations

import difflib
import functools
import re
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import RulesError
from ..matching.hosts import is_ip_address, is_loopback, is_public_suffix, normalise_host
from ..model import (
    HTTP_TOKEN,
    AssertionSettings,
    AuthStyle,
    ClientCertificate,
    Credentials,
    DPoPSettings,
    Match,
    Rule,
)
from ..oauth import assertion
from ..secret import Secret, SecretFile, SecretValue
from .environment import UnsetVariable, expand
from .fields import BY_NAME, MATCH_KEYS, RULE_KEYS, Field
from .speedups import shared

SCHEMES = ("http", "https")
ASSERTION_KEYS = (
    "assertion_alg",
    "assertion_audience",
    "assertion_lifetime",
    "private_key_file",
    "key_id",
)
RESERVED_PARAMS = {
    "scope": "use the rule's 'scopes' field instead",
    "grant_type": "this addon only performs the client_credentials grant",
}
"""Parameters the token request sets itself: overriding them would silently change what is
asked for (golang/oauth2 fails on `scope` at run time)."""
RESERVED_TOKEN_HEADERS = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "te", "upgrade"}
)
"""Headers of a token request that the request itself decides."""
RESERVED_INJECTED_HEADERS = RESERVED_TOKEN_HEADERS | {"accept", "cookie", "proxy-authorization"}
"""Headers that the injected token may not be put in: they frame the request or name its
target."""

_RULE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FIELD_VALUE = re.compile(r"[\x21-\x7e]([\x20\x09\x21-\x7e]*[\x21-\x7e])?")
"""An RFC 9110 field-value, visible ASCII only."""
_KEY_NAME = re.compile(r"[A-Za-z0-9_.-]{1,40}")


class UnsetVariableError(RulesError):
    """A rule refers to an environment variable that is unset or empty."""


class RuleReader:
    """Reads one rule, so that every error knows which rule and field it is about."""

    def __init__(
        self, item: object, *, file: str, position: int, environ: Mapping[str, str], base: Path
    ) -> None:
        self.file = file
        self.base = base
        self.position = position
        self.environ = environ
        self.label = rule_label(item, position)
        if not isinstance(item, dict):
            raise self.error(None, "must be a mapping")
        self.item: dict[Any, Any] = item

    def error(self, field: str | None, message: str) -> RulesError:
        return RulesError(message, file=self.file, rule=self.label, field=field)

    def safely_read(self) -> tuple[Rule, bool]:
        """The rule and whether it is disabled; anything unforeseen is a RulesError too."""
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
        disabled = self.value("is_disabled")
        token_type = self.item.get("token_type")
        if token_type is not None and not HTTP_TOKEN.fullmatch(
            self.string("token_type", token_type)
        ):
            raise self.error("token_type", "must be an authentication scheme such as Bearer")
        client_authorization = self.value("client_authorization")
        header_name = self.header_name()
        match = self.match()  # the file's order: a wrong match is reported first
        credentials = self.credentials()
        if credentials.dpop is not None and token_type not in (None, "DPoP"):
            raise self.error("token_type", "a dpop rule sends DPoP tokens: leave it out")
        rule = Rule(
            name=name,
            match=match,
            credentials=credentials,
            accept=self.accept(),
            client_authorization=client_authorization,
            token_type=token_type,
            header_name=header_name,
            header_value=self.header_value(),
            purge_on_status=self.statuses("purge_on_status"),
            retry_on_401=self.value("retry_on_401"),
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
            schemes=self.schemes(section.get("scheme", BY_NAME["match.scheme"].default)),
            port=self.port(section.get("port")),
            path=self.path(section.get("path", BY_NAME["match.path"].default)),
            methods=self.methods(section.get("methods")),
        )

    def credentials(self) -> Credentials:
        token_url = self.token_url(self.item.get("token_url"))
        style = AuthStyle(self.value("auth_style"))
        client_secret = self.client_secret(style)
        return Credentials(
            token_url=token_url,
            client_id=self.secret_value("client_id"),
            client_secret=client_secret,
            auth_style=style,
            scopes=self.scopes(self.item.get("scopes")),
            endpoint_params=self.endpoint_params(self.item.get("endpoint_params")),
            ca_file=self.value("ca_file"),
            assertion=self.assertion(style, client_secret),
            client_certificate=self.client_certificate(style),
            token_headers=self.token_headers(style),
            request_format=self.value("token_request_format"),
            dpop=self.dpop(),
        )

    def dpop(self) -> DPoPSettings | None:
        """The DPoP settings of a rule with `dpop: true`; its other fields need that."""
        if not self.value("dpop"):
            for key in ("dpop_key_file", "dpop_alg"):
                if key in self.item:
                    raise self.error(key, "only used with dpop: true")
            return None
        return DPoPSettings(self.value("dpop_alg"), self.value("dpop_key_file"))

    def client_secret(self, style: AuthStyle) -> SecretValue | None:
        """Required, except by the styles that prove the client's identity without it."""
        if style.needs_secret:
            return self.secret_value("client_secret")
        for name in ("client_secret", "client_secret_file"):
            if name in self.item:
                raise self.error(name, f"not used with auth_style {style}: leave it out")
        return None

    def assertion(self, style: AuthStyle, secret: SecretValue | None) -> AssertionSettings | None:
        """The settings of client_secret_jwt and private_key_jwt."""
        if not style.signs_assertion:
            for key in ASSERTION_KEYS:
                if key in self.item:
                    raise self.error(
                        key, "only used with auth_style client_secret_jwt or private_key_jwt"
                    )
            return None
        hmac = style is AuthStyle.CLIENT_SECRET_JWT
        allowed = assertion.HMAC_ALGORITHMS if hmac else assertion.KEY_ALGORITHMS
        algorithm = self.string(
            "assertion_alg", self.item.get("assertion_alg", assertion.DEFAULT_ALGORITHM[style])
        )
        if algorithm not in allowed:
            raise self.error("assertion_alg", f"must be one of {', '.join(allowed)} for {style}")
        if style.needs_key and self.value("private_key_file") is None:
            raise self.error("private_key_file", "required by private_key_jwt: a PEM private key")
        if hmac and ("private_key_file" in self.item or "key_id" in self.item):
            name = "private_key_file" if "private_key_file" in self.item else "key_id"
            raise self.error(name, "client_secret_jwt signs with the client secret, not a key")
        if hmac and isinstance(secret, Secret):  # a secret file is checked with the files
            try:
                assertion.check_secret_length(algorithm, secret.reveal())
            except ValueError as e:
                raise self.error("client_secret", str(e)) from None
        return AssertionSettings(
            algorithm=algorithm,
            audience=self.value("assertion_audience"),
            lifetime=self.value("assertion_lifetime"),
            private_key_file=self.value("private_key_file"),
            key_id=self.value("key_id"),
        )

    def client_certificate(self, style: AuthStyle) -> ClientCertificate | None:
        """Both files or neither; TLS client auth styles need them."""
        cert, key = self.value("client_cert_file"), self.value("client_key_file")
        if cert is None and key is None:
            if style.needs_certificate:
                raise self.error("client_cert_file", f"required by auth_style {style}")
            return None
        if cert is None or key is None:
            missing = "client_cert_file" if cert is None else "client_key_file"
            raise self.error(missing, "give client_cert_file and client_key_file together")
        return ClientCertificate(cert, key)

    def token_headers(self, style: AuthStyle) -> tuple[tuple[str, str], ...]:
        value = self.item.get("token_headers")
        if value is None:
            return ()
        if not isinstance(value, dict):
            raise self.error("token_headers", "must map header names to values")
        headers = []
        for name, header_value in value.items():
            where = f"token_headers.{key_label(name)}"
            if not isinstance(name, str) or not HTTP_TOKEN.fullmatch(name):
                raise self.error("token_headers", f"'{key_label(name)}' is not a header name")
            lowered = name.lower()
            if lowered in RESERVED_TOKEN_HEADERS:
                raise self.error(where, "set by the token request itself")
            if lowered == "authorization" and style.sends_own_authorization:
                raise self.error(where, f"auth_style {style} sends its own Authorization")
            headers.append((name, self.header_line(where, header_value, secret=True)))
        return tuple(headers)

    def header_name(self) -> str:
        name = self.string("header_name", self.item.get("header_name", self.default("header_name")))
        if not HTTP_TOKEN.fullmatch(name):
            raise self.error("header_name", f"{name!r} is not a header name")
        if name.lower() in RESERVED_INJECTED_HEADERS:
            raise self.error("header_name", f"{name} cannot carry the token")
        return name

    def header_value(self) -> str:
        """A template with {access_token}, optionally {token_type}; `{{` `}}` for braces."""
        template = self.header_line(
            "header_value", self.item.get("header_value", self.default("header_value"))
        )
        problem = _template_problem(template)
        if problem:
            raise self.error("header_value", problem)
        return template

    def accept(self) -> str | None:
        if "accept" not in self.item:
            return self.default("accept")
        value = self.item["accept"]
        return None if value is None else self.header_line("accept", value)

    # -- fields with rules of their own ------------------------------------

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
                "match.host", f"'{raw}' would match every site under the public suffix '{base}'"
            )
        return f"*.{base}"

    def schemes(self, value: object) -> frozenset[str]:
        values = value if isinstance(value, list) else [value]
        schemes = {self.string("match.scheme", v).lower() for v in values}
        if not schemes or not schemes <= set(SCHEMES):
            raise self.error("match.scheme", "must be https, http, or a list of both")
        return shared(frozenset(schemes))

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
        return shared(frozenset(methods))

    def token_url(self, value: object) -> str:
        """An https URL; http only for loopback or with `allow_insecure_token_url`."""
        url = self.string("token_url", value)
        problem = _token_url_problem(url, self.value("allow_insecure_token_url"))
        if problem:
            raise self.error("token_url", problem)
        return url

    def secret_value(self, field: str) -> SecretValue:
        """Exactly one of `field` (in the file or environment) or `field_file` (read at use)."""
        file_field = f"{field}_file"
        if field in self.item and file_field in self.item:
            raise self.error(file_field, f"give {field} or {file_field}, not both")
        if file_field in self.item:
            path = self.value(file_field)
            if path is None:
                raise self.error(file_field, "required")
            return SecretFile(path)
        is_secret = field == "client_secret"
        return Secret(self.string(field, self.item.get(field), secret=is_secret))

    def statuses(self, field: str) -> frozenset[int]:
        value = self.item.get(field, self.default(field))
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and 400 <= v <= 599 for v in value
        ):
            raise self.error(field, "must be a list of HTTP statuses from 400 to 599")
        return shared(frozenset(value))

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
            where = f"endpoint_params.{key_label(name)}"
            if not isinstance(name, str) or not name:
                raise self.error("endpoint_params", "parameter names must be strings")
            if name in RESERVED_PARAMS:
                raise self.error(where, f"not allowed here: {RESERVED_PARAMS[name]}")
            items = values if isinstance(values, list) else [values]
            if not items:
                raise self.error(where, "needs at least one value")
            params.append((name, tuple(self.string(where, v, secret=True) for v in items)))
        return tuple(params)

    # -- the simple kinds, by the field table -------------------------------

    def default(self, name: str) -> Any:
        return BY_NAME[name].default

    def value(self, name: str) -> Any:
        """A top-level field of a simple kind, checked as its entry in the table says."""
        field = BY_NAME[name]
        if name not in self.item:
            return field.default
        return _READERS[field.kind](self, field, self.item[name])

    def _boolean(self, field: Field, value: object) -> bool:
        if not isinstance(value, bool):
            raise self.error(field.name, "must be true or false")
        return value

    def _choice(self, field: Field, value: object) -> str:
        chosen = self.string(field.name, value)
        if chosen not in field.choices:
            raise self.error(field.name, f"must be one of {', '.join(field.choices)}")
        return chosen

    def _seconds(self, field: Field, value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= field.maximum:
            raise self.error(field.name, f"must be a number of seconds from 1 to {field.maximum}")
        return value

    def _string(self, field: Field, value: object) -> str | None:
        if value is None and field.default is None:
            return None  # written out as null: the same as left out
        return self.string(field.name, value)

    def _file(self, field: Field, value: object) -> str | None:
        """A path; relative ones are relative to the rules file's folder."""
        if value is None and field.default is None:
            return None
        try:
            path = Path(self.string(field.name, value)).expanduser()
        except RuntimeError:  # ~name of a user this machine does not know
            raise self.error(field.name, "names the home folder of an unknown user") from None
        return str(path if path.is_absolute() else self.base / path)

    # -- helpers ----------------------------------------------------------

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

    def check_keys(self, section: dict[Any, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in section:
            if key not in allowed:
                raise self.error(f"{prefix}{key_label(key)}", unknown_key(key, allowed))

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
        try:
            return expand(value, self.environ)
        except UnsetVariable as e:
            raise UnsetVariableError(str(e), file=self.file, rule=self.label, field=field) from None


_READERS = {
    "boolean": RuleReader._boolean,
    "choice": RuleReader._choice,
    "seconds": RuleReader._seconds,
    "string": RuleReader._string,
    "file": RuleReader._file,
}


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


def rule_label(item: object, position: int) -> str:
    """How messages name a rule: by its name and place, or by its place alone."""
    name = item.get("name") if isinstance(item, dict) else None
    return f"'{name}' (#{position + 1})" if isinstance(name, str) and name else f"#{position + 1}"


def unknown_key(key: object, allowed: tuple[str, ...]) -> str:
    name, rest = _key_parts(key)
    message = f"unknown key '{key_label(key)}'"
    if rest and name in allowed:
        return f"{message} (write '{name}: value', with a space after the colon)"
    hint = difflib.get_close_matches(name, allowed, n=1)
    if hint:
        return f"{message} (did you mean '{hint[0]}'?)"
    return f"{message} (allowed: {', '.join(allowed)})"


def key_label(key: object) -> str:
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
