"""Which rule, if any, applies to a request's destination.

Rules are indexed by host, so a lookup costs two dictionary probes and a
short scan of the rules for that host, however many rules there are.

A token may only go where its rule says. So the destination is read from
where the proxy really connects, and a request that names its host in more
than one way (Host header, HTTP/2 `:authority`, TLS SNI) must name the same
host each time; a path that servers may read in different ways (dot segments,
encoded slashes, `//`, `;`) only matches rules that cover the whole host.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import NamedTuple

from ..model import Credentials, Rule, credential_sets
from .hosts import connect_host, wire_host

NEVER_INJECTED = frozenset({"TRACE", "TRACK", "CONNECT"})
"""TRACE and TRACK echo the request, token included, back to the client; CONNECT is the proxy's."""

REMEMBERED = 4096
"""Destinations whose rule an index remembers (it starts afresh when full)."""

_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_CHARS = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,=:@/%]*")
_PORT = re.compile(r"[0-9]{1,5}")


class AmbiguousRequest(ValueError):
    """The request could be read as going to more than one place: it gets no token.

    `host` is the destination's host when it could be read, so that traffic
    to hosts no rule names can be left alone.
    """

    def __init__(self, message: str, host: str | None = None) -> None:
        super().__init__(message)
        self.host = host


class Destination(NamedTuple):
    """Where a request really goes: the proxy's upstream target, never the Host header.

    `path` is None when servers may disagree on what it means. (A NamedTuple:
    one is built per request, and a frozen dataclass is slow to build.)
    """

    scheme: str
    host: str
    port: int
    path: str | None
    method: str

    @classmethod
    def of(
        cls,
        scheme: str,
        host: str,
        port: int,
        path: str,
        method: str,
        *,
        other_names: Iterable[str] = (),
    ) -> Destination:
        """Normalise as rules are; raise `AmbiguousRequest` if `other_names` disagree.

        `other_names` are the other places a request names its host: Host
        headers, `:authority`, SNI. Each must be the same host, spelt in ASCII
        as a server compares it (and the same port, where it has one).
        """
        try:
            host = connect_host(host)
        except ValueError as e:
            raise AmbiguousRequest(f"the host {_quoted(host)} is {e}") from None
        for name in other_names:
            other_host, other_port = _named(name, host)
            if other_host != host:
                raise AmbiguousRequest(f"the request also names the host {_quoted(name)}", host)
            if other_port is not None and other_port != port:
                raise AmbiguousRequest(f"the request also names the port {other_port}", host)
        return cls(scheme.lower(), host, port, canonical_path(path), method.upper())


def _named(name: str, destination: str) -> tuple[str, int | None]:
    """A Host header, `:authority` or SNI value as (host, port), read as a server reads it."""
    try:
        host, port = split_host_port(name)
        return wire_host(host), port
    except ValueError as e:
        message = f"the request also names {_quoted(name)}, which is {e}"
        raise AmbiguousRequest(message, destination) from None


def _quoted(name: str) -> str:
    """A name for a message: quoted, and cut short (a Host header can be kilobytes long)."""
    return repr(name) if len(name) <= 80 else f"{name[:80]!r}…"


@functools.lru_cache(maxsize=4096)
def split_host_port(authority: str) -> tuple[str, int | None]:
    """`host:port` → (host, port); IPv6 literals in brackets. Raises ValueError.

    A port is one to five ASCII digits: `²` or `٨٠` are digits to Python, not to a server.
    """
    authority = authority.strip()
    if authority.startswith("["):
        end = authority.find("]") + 1
        host, rest = authority[:end], authority[end:]
    elif authority.count(":") == 1:
        colon = authority.index(":")
        host, rest = authority[:colon], authority[colon:]
    else:  # no port, or an IPv6 literal without brackets
        return authority, None
    if not rest:
        return host, None
    if not rest.startswith(":") or not _PORT.fullmatch(rest[1:]) or int(rest[1:]) > 65535:
        raise ValueError("not host:port")
    return host, int(rest[1:])


@functools.lru_cache(maxsize=4096)
def canonical_path(target: str) -> str | None:
    """The request path as every server reads it, or None when servers may differ.

    Percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2:
    `/%76%31` is `/v1`). Dot segments, `//`, `;` parameters, backslashes and
    encoded `/`, `\\` or `;` are read differently by different servers and
    frameworks, so such a path has no canonical form.
    """
    path = target.split("?", 1)[0].split("#", 1)[0]
    if path == "*":
        return path
    if not path.startswith("/") or not _PATH_CHARS.fullmatch(path):
        return None

    def decode(m: re.Match[str]) -> str:
        char = chr(int(m.group(1), 16))
        return char if char in _UNRESERVED else m.group(0).upper()

    path = _PERCENT.sub(decode, path)
    if "%" in _PERCENT.sub("", path):
        return None  # a lone "%" that is no escape
    upper = path.upper()
    if "//" in path or ";" in path or "%2F" in upper or "%5C" in upper or "%3B" in upper:
        return None
    segments = path.split("/")
    if "." in segments or ".." in segments:
        return None
    return path


def path_has_prefix(path: str, prefix: str) -> bool:
    """Prefix match on segment boundaries: `/v1` matches `/v1` and `/v1/x`, not `/v10`."""
    if prefix == "/" or path == prefix:
        return True
    return path.startswith(prefix) and path[len(prefix)] == "/"


class RuleIndex:
    """Finds the most specific rule: exact host over wildcard, longest path, file order."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        self.rules = list(rules)
        self.credential_sets: dict[Credentials, tuple[str, ...]] = credential_sets(self.rules)
        """Each credential set, with its rules' names (worked out here, off the event loop)."""
        exact: dict[str, list[Rule]] = defaultdict(list)
        wildcard: dict[str, list[Rule]] = defaultdict(list)
        for rule in self.rules:
            if rule.match.is_wildcard:
                wildcard[rule.match.host[2:]].append(rule)
            else:
                exact[rule.match.host].append(rule)
        self._exact = {host: _by_specificity(rs) for host, rs in exact.items()}
        self._wildcard = {parent: _by_specificity(rs) for parent, rs in wildcard.items()}
        self._known: dict[Destination, Rule | None] = {}

    def __len__(self) -> int:
        return len(self.rules)

    def covers(self, host: str) -> bool:
        """Whether any rule names `host` (normalised), exactly or by wildcard."""
        if host in self._exact:
            return True
        label, _, parent = host.partition(".")
        return bool(label and parent in self._wildcard)

    def dismantle(self) -> None:
        """Empty this retired index a rule at a time, in a thread beside the event loop.

        Dropping a large index at once is one call that holds the GIL throughout;
        one by one, the interpreter can hand the GIL to the event loop in between
        (as `config.speedups.drop_gradually` does for a parsed file).
        """
        self._known.clear()
        for table in (self._exact, self._wildcard, self.credential_sets):
            while table:
                table.popitem()
        while self.rules:
            self.rules.pop()

    def match(self, dest: Destination) -> Rule | None:
        """The rule for `dest`, if any.

        Remembered: most requests go where an earlier one went, and an index
        lives as long as its rules file.
        """
        if dest in self._known:
            return self._known[dest]
        if len(self._known) >= REMEMBERED:
            self._known.clear()
        rule = self._known[dest] = self._find(dest)
        return rule

    def _find(self, dest: Destination) -> Rule | None:
        if dest.method in NEVER_INJECTED:
            return None
        for rule in self._exact.get(dest.host, ()):
            if why_not(rule, dest) is None:
                return rule
        label, _, parent = dest.host.partition(".")
        if label and parent:
            for rule in self._wildcard.get(parent, ()):
                if why_not(rule, dest) is None:
                    return rule
        return None


class Mismatch:
    """Why a rule does not apply. The message is only built when someone reads it:
    the index, asking on every request, only needs to know that there is one."""

    __slots__ = ("_message",)

    def __init__(self, message: Callable[[], str]) -> None:
        self._message = message

    def __str__(self) -> str:
        return self._message()


def why_not(rule: Rule, dest: Destination) -> Mismatch | None:
    """Why `rule` does not apply to `dest`, or None if it does (it may still lose to another).

    The one statement of what a match is: the index and `oauth.explain` both ask it.
    """
    m = rule.match
    if dest.method in NEVER_INJECTED:
        return Mismatch(lambda: f"{dest.method} requests never get a token")
    if m.is_wildcard:
        label, _, parent = dest.host.partition(".")
        if not label or parent != m.host[2:]:
            return Mismatch(lambda: f"host {dest.host} is not one label under {m.host[2:]}")
    elif dest.host != m.host:
        return Mismatch(lambda: f"host {dest.host} is not {m.host}")
    if dest.scheme not in m.schemes:
        return Mismatch(lambda: f"scheme {dest.scheme} is not {' or '.join(sorted(m.schemes))}")
    if m.port is not None and dest.port != m.port:
        return Mismatch(lambda: f"port {dest.port} is not {m.port}")
    if m.path != "/":
        if dest.path is None:
            return Mismatch(
                lambda: (
                    "the path could be read in more than one way (dot segments, //, ;, "
                    "encoded / \\ ;): only rules for a whole host apply"
                )
            )
        if not path_has_prefix(dest.path, m.path):
            return Mismatch(lambda: f"path {dest.path} is not under {m.path}")
    methods = m.methods
    if methods is not None and dest.method not in methods:
        return Mismatch(lambda: f"method {dest.method} is not {', '.join(sorted(methods))}")
    return None


def _by_specificity(rules: list[Rule]) -> list[Rule]:
    return sorted(rules, key=lambda r: (-len(r.match.path), r.position))
