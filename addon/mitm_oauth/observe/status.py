"""The `oauth.status` table and the exit summary: what each rule's tokens are doing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit

from ..model import Credentials
from ..oauth.cache import Status

COLUMNS = (
    "rule",
    "credentials",
    "state",
    "token",
    "expires in",
    "fetches",
    "failed",
    "hits",
    "purges",
    "injected",
    "last error",
)


def credential_label(status: Status) -> str:
    """A short name for a credential set: endpoint host, auth style (and DPoP), scopes; no
    secret."""
    creds = status.credentials
    host = urlsplit(creds.token_url).netloc
    scopes = ",".join(creds.scopes) or "-"
    bound = " DPoP" if creds.dpop is not None else ""
    return f"{host} {creds.auth_style}{bound} {scopes}"


def status_rows(
    statuses: list[Status],
    injected: Counter[str],
    thumbprint: Callable[[Credentials], str | None] = lambda creds: None,
) -> list[tuple[str, ...]]:
    """A row per rule; `thumbprint`: the key a DPoP credential set's tokens are bound to."""
    rows: list[tuple[str, ...]] = []
    for s in statuses:
        for rule in s.rules:
            rows.append(
                (
                    rule,
                    credential_label(s),
                    s.state,
                    _token(s, thumbprint(s.credentials)),
                    f"{s.usable_for:.0f} s" if s.usable_for is not None else "-",
                    str(s.fetches),
                    str(s.failed_fetches),
                    str(s.hits),
                    str(s.purges),
                    str(injected[rule]),
                    s.last_error or "-",
                )
            )
    return rows


def _token(status: Status, jkt: str | None) -> str:
    if status.fingerprint is None:
        return "-"
    notes = []
    if status.source == "store":
        notes.append("from the store")
    if jkt is not None:
        notes.append(f"DPoP jkt {jkt}")
    return f"sha256:{status.fingerprint}" + (f" ({', '.join(notes)})" if notes else "")


def format_table(rows: list[tuple[str, ...]]) -> str:
    if not rows:
        return "no rules loaded"
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [COLUMNS, *rows]
    ]
    return "\n".join(lines)


def summary(statuses: list[Status], injected: Counter[str], refused: Counter[str]) -> str:
    fetches = sum(s.fetches for s in statuses)
    failed = sum(s.failed_fetches for s in statuses)
    purges = sum(s.purges for s in statuses)
    from_store = sum(s.from_store for s in statuses)
    shared = f", {from_store} from the store" if from_store else ""
    return (
        f"oauth: {sum(injected.values())} request(s) got a token, "
        f"{sum(refused.values())} refused; {fetches} token fetch(es){shared}, {failed} failed, "
        f"{purges} purge(s)"
    )
