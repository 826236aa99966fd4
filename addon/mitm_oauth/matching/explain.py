"""Why a URL gets a token from one rule and not from the others: for people, not machines."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import urlsplit

from ..model import Rule
from .hosts import default_port
from .index import AmbiguousRequest, Destination, RuleIndex, why_not


def destination_of_url(url: str, method: str = "GET") -> Destination:
    """The destination a proxied request for `url` has; raises ValueError for a bad URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    port = parts.port or default_port(parts.scheme)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Destination.of(parts.scheme, parts.hostname, port, target, method)


class Explanation(NamedTuple):
    text: str
    rule: Rule | None
    """The rule whose token the request gets; None when it gets none."""
    understood: bool
    """False for a URL no proxied request could have: scripts tell a typo from "no rule"."""


def explain_url(index: RuleIndex, url: str, method: str = "GET") -> Explanation:
    """Which rule gives `url` its token, and for every other rule why not."""
    try:
        dest = destination_of_url(url, method)
    except ValueError as e:
        return Explanation(f"{method.upper()} {url}: no token: {e}", None, understood=False)
    except AmbiguousRequest as e:
        return Explanation(f"{method.upper()} {url}: no token: {e}", None, understood=True)
    winner = index.match(dest)
    verdict = f"rule {winner.name}" if winner else "no rule matches: sent on without a token"
    lines = [f"{dest.method} {url} → {verdict}"]
    width = max((len(r.name) for r in index.rules), default=0)
    for rule in index.rules:
        mismatch = why_not(rule, dest)
        if rule is winner:
            reason = "matches: its token is sent"
            if rule.credentials.dpop is not None:
                reason = "matches: its DPoP-bound token is sent, with a proof per request"
        elif mismatch is None:
            reason = f"matches too, but rule {winner.name if winner else '?'} is more specific"
        else:
            reason = str(mismatch)
        lines.append(f"  {rule.name:<{width}}  {reason}")
    return Explanation("\n".join(lines), winner, understood=True)
