"""KrakenD → rules.yaml: every backend's `auth/client-credentials` block becomes a rule.

The backend's `host` and `url_pattern` become the rule's `match`; a martian
`header.Modifier` that sets `Accept` on the request becomes `accept`. Secrets
are not copied: they become `${…}` references to set in the environment, so
the generated file can be committed and printed safely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

NAMESPACE = "auth/client-credentials"
MARTIAN = "modifier/martian"
SECRET_KEYS = ("client_secret",)


@dataclass
class Conversion:
    rules: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    """Environment variable → where its value is in the KrakenD file (never the value)."""
    variables: dict[str, str] = field(default_factory=dict, repr=False)
    """Secret → its variable, so that backends sharing a secret share one variable."""

    def variable_for(self, secret: str, proposed: str, where: str) -> str:
        """The variable that stands for `secret`: `proposed` unless an earlier backend has it."""
        variable = self.variables.setdefault(secret, proposed)
        place = f"{where}: client_secret"
        known = self.secrets.get(variable)
        self.secrets[variable] = f"{known}; {place}" if known else place
        return variable


def convert(config: Any) -> Conversion:
    """Convert a krakend.json document: a whole config, one endpoint, or a list of them."""
    result = Conversion()
    if isinstance(config, dict) and "endpoints" in config:
        endpoints, default_hosts = config["endpoints"], config.get("host", [])
    elif isinstance(config, dict):
        endpoints, default_hosts = [config], []
    elif isinstance(config, list):
        endpoints, default_hosts = config, []
    else:
        raise ValueError("expected a KrakenD configuration object")
    names: set[str] = set()
    for endpoint in endpoints:
        if not isinstance(endpoint, dict):
            continue
        for index, backend in enumerate(endpoint.get("backend") or []):
            block = (backend.get("extra_config") or {}).get(NAMESPACE)
            if isinstance(block, dict):
                where = f"endpoint {endpoint.get('endpoint', '?')}, backend #{index + 1}"
                name = _unique(_slug(endpoint.get("endpoint", "backend"), index), names)
                rule = _rule(name, where, backend, block, result)
                for number, match in enumerate(_matches(where, backend, default_hosts, result)):
                    # KrakenD balances over a backend's hosts: each gets the same token.
                    named = name if number == 0 else _unique(f"{name}-host{number + 1}", names)
                    result.rules.append({"name": named, "match": match, **rule})
    if not result.rules:
        result.warnings.append(f"no backend has an '{NAMESPACE}' block: nothing to convert")
    return result


def _rule(
    name: str, where: str, backend: dict[str, Any], block: dict[str, Any], result: Conversion
) -> dict[str, Any]:
    """Everything of the rule but its name and match."""
    rule: dict[str, Any] = {"token_url": block.get("token_url", "")}
    rule["client_id"] = block.get("client_id", "")
    proposed = f"{name.upper().replace('-', '_').replace('.', '_')}_CLIENT_SECRET"
    variable = proposed
    if block.get("client_secret"):
        variable = result.variable_for(str(block["client_secret"]), proposed, where)
        rule["client_secret"] = f"${{{variable}}}"

    scopes = block.get("scopes")
    params = {
        k: list(v) if isinstance(v, list) else [v]
        for k, v in (block.get("endpoint_params") or {}).items()
    }
    if "scope" in params:
        extra = [s for value in params.pop("scope") for s in str(value).split()]
        result.warnings.append(
            f"{where}: 'scope' in endpoint_params (golang/oauth2 refuses it at run time, "
            "KrakenD then fails every request); moved into scopes"
        )
        scopes = ",".join([*(scopes.split(",") if scopes else []), *extra])
    if isinstance(scopes, str):
        items = scopes.split(",")
        cleaned = [s.strip() for s in items if s.strip()]
        if len(cleaned) != len(items) or any(s != s.strip() for s in items):
            result.warnings.append(
                f"{where}: scopes {scopes!r} has empty or padded entries (KrakenD sends them "
                "as they are, e.g. 'scope=' or double spaces); cleaned"
            )
        if cleaned:
            rule["scopes"] = ",".join(cleaned)
    for key in SECRET_KEYS:
        if key in params:
            params[key] = [f"${{{variable}}}"]
    if "client_id" in params or "client_secret" in params:
        result.warnings.append(
            f"{where}: credentials in endpoint_params as well as client_id/client_secret: with "
            "KrakenD's automatic auth style the first attempt sends them in the header and "
            "the body at once, which strict servers refuse; consider auth_style: params"
        )
    if params:
        rule["endpoint_params"] = params
    accept = _martian_accept(backend.get("extra_config") or {})
    if accept is not None:
        rule["accept"] = accept
    if block.get("is_disabled"):
        rule["is_disabled"] = True
    return rule


def _matches(
    where: str, backend: dict[str, Any], default_hosts: list[str], result: Conversion
) -> list[dict[str, Any]]:
    """One match per host of the backend."""
    hosts = backend.get("host") or default_hosts
    if isinstance(hosts, str):
        hosts = [hosts]
    if not hosts:
        result.warnings.append(f"{where}: no backend host in the file; set match.host")
        hosts = ["https://REPLACE-ME.example.com"]
    return [_match(where, str(host), backend, result) for host in hosts]


def _match(where: str, host: str, backend: dict[str, Any], result: Conversion) -> dict[str, Any]:
    if "://" not in host:
        result.warnings.append(
            f"{where}: host {host!r} has no scheme; taken as https (KrakenD would need one)"
        )
    url = host if "://" in host else f"https://{host}"
    parts = urlsplit(url)
    match: dict[str, Any] = {"host": parts.hostname or "REPLACE-ME.example.com"}
    if parts.port:
        match["port"] = parts.port
    if parts.scheme == "http":
        match["scheme"] = "http"
        result.warnings.append(
            f"{where}: the backend is plain http: the token will travel unencrypted"
        )
    pattern = backend.get("url_pattern") or "/"
    # Up to the first placeholder segment: /users/{id}/orders matches under /users.
    prefix = re.split(r"/[^/]*[{:][^/]*", pattern, maxsplit=1)[0] or "/"
    match["path"] = prefix
    return match


def _martian_accept(extra: dict[str, Any]) -> str | None:
    """The value of a martian header.Modifier that sets Accept on requests, if any."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            modifier = node.get("header.Modifier")
            if (
                isinstance(modifier, dict)
                and str(modifier.get("name", "")).lower() == "accept"
                and "request" in (modifier.get("scope") or ["request"])
            ):
                found.append(str(modifier.get("value", "")))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(extra.get(MARTIAN))
    return found[0] if found else None


def _slug(endpoint: str, index: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", str(endpoint)).strip("-").lower() or "backend"
    return slug if index == 0 else f"{slug}-{index + 1}"


def _unique(name: str, names: set[str]) -> str:
    candidate, n = name, 2
    while candidate in names:
        candidate, n = f"{name}-{n}", n + 1
    names.add(candidate)
    return candidate
