"""The console commands: oauth.status, oauth.refresh, oauth.flush, oauth.explain.

mitmproxy collects them from this object as from an addon (`collect_commands`),
without it joining the addon chain, where it would cost a step on every event.
"""

from __future__ import annotations

from mitmproxy import command, exceptions

from ..matching.explain import explain_url
from ..oauth.cache import TokenCache
from ..observe.status import format_table, status_rows
from .injector import Injector
from .sharing import Sharing


class Commands:
    """What an operator asks the running addon: token states, refreshes, why a URL matches."""

    def __init__(self, cache: TokenCache, injector: Injector, sharing: Sharing) -> None:
        self.cache = cache
        self.injector = injector
        self.sharing = sharing

    @command.command("oauth.status")
    def status(self) -> str:
        """The token store; each rule's credential set, token state, fingerprint, lifetime
        left and counters."""
        rows = status_rows(
            self.cache.status(), self.injector.injected, self.injector.proofs.thumbprint
        )
        table = format_table(rows)
        return f"{self.sharing.status_line()}\n{table}"

    @command.command("oauth.refresh")
    def refresh(self, rule: str = "") -> str:
        """Fetch new tokens now: for one rule's credential set, or for all."""
        sets = self.cache.credential_sets()
        chosen = [c for c, names in sets.items() if not rule or rule in names]
        if not chosen:
            raise exceptions.CommandError(f"no rule named {rule!r}")
        started = sum(self.cache.refresh(c) for c in chosen)
        return f"refreshing {started} credential set(s)"

    @command.command("oauth.flush")
    def flush(self) -> str:
        """Drop every cached token: the next request for each fetches a new one."""
        return f"dropped {self.cache.flush()} token(s)"

    @command.command("oauth.explain")
    def explain(self, url: str, method: str = "GET") -> str:
        """Which rule gives URL its token, and why each other rule does not."""
        if self.injector.rules is None:
            return "no valid rules file is loaded"
        return explain_url(self.injector.rules, url, method).text
