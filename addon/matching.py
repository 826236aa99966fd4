"""Which rule, if any, applies to a request's destination.

Rules are indexed by host, so a lookup costs two dictionary probes and a
short scan of the rules for that host, however many rules there are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from addon.rules import Rule


@dataclass(frozen=True)
class Destination:
    """Where a request really goes: the proxy's upstream target, never the Host header."""

    scheme: str
    host: str
    port: int
    path: str
    method: str

    @classmethod
    def of(cls, scheme: str, host: str, port: int, path: str, method: str) -> Destination:
        """Normalise as rules are: lower-case host, no trailing dot, path without query."""
        host = host.lower()
        if host.endswith("."):
            host = host[:-1]
        return cls(scheme.lower(), host, port, path.split("?", 1)[0], method.upper())


def path_has_prefix(path: str, prefix: str) -> bool:
    """Prefix match on segment boundaries: `/v1` matches `/v1` and `/v1/x`, not `/v10`."""
    if prefix == "/" or path == prefix:
        return True
    return path.startswith(prefix) and path[len(prefix)] == "/"


def rule_applies(rule: Rule, dest: Destination) -> bool:
    """Everything but the host, which the index has already matched."""
    m = rule.match
    return (
        dest.scheme in m.schemes
        and (m.port is None or m.port == dest.port)
        and (m.methods is None or dest.method in m.methods)
        and path_has_prefix(dest.path, m.path)
    )


class RuleIndex:
    """Finds the most specific rule: exact host over wildcard, longest path, file order."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        exact: dict[str, list[Rule]] = defaultdict(list)
        wildcard: dict[str, list[Rule]] = defaultdict(list)
        for rule in rules:
            if rule.match.is_wildcard:
                wildcard[rule.match.host[2:]].append(rule)
            else:
                exact[rule.match.host].append(rule)
        self._exact = {host: _by_specificity(rs) for host, rs in exact.items()}
        self._wildcard = {parent: _by_specificity(rs) for parent, rs in wildcard.items()}

    def __len__(self) -> int:
        return sum(map(len, self._exact.values())) + sum(map(len, self._wildcard.values()))

    def match(self, dest: Destination) -> Rule | None:
        for rule in self._exact.get(dest.host, ()):
            if rule_applies(rule, dest):
                return rule
        label, _, parent = dest.host.partition(".")
        if label and parent:
            for rule in self._wildcard.get(parent, ()):
                if rule_applies(rule, dest):
                    return rule
        return None


def _by_specificity(rules: list[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda r: (-len(r.match.path), r.position))
