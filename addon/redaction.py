"""A last line of defence: secrets and tokens are cut out of every log record.

Our own messages never contain them; this catches what others print, such as
mitmproxy's `proxy_debug` output, which logs every byte sent upstream, and
what token endpoints echo back in their error descriptions.
"""

from __future__ import annotations

import base64
import heapq
import json
import logging
import math
import time
from collections.abc import Callable
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
SHORTEST = 4
"""Shorter spellings are not cut out: that would mangle every message."""
FEW = 256
"""Up to this many spellings, each is looked for in turn; beyond, by their last characters."""


def spellings(value: str) -> set[str]:
    """How a value may appear in text: raw, URL-, base64-, JSON- and Python-escaped.

    Python's escapes are those of `repr()` for text and for bytes (proxy_debug
    logs what it sends as bytes), with and without an escaped single quote.
    """
    utf8 = value.encode()
    escaped = {
        value.encode("unicode_escape").decode("ascii"),  # repr() of text
        utf8.decode("latin-1").encode("unicode_escape").decode("ascii"),  # repr() of bytes
        value.replace("\\", "\\\\"),  # repr() of text that keeps printable non-ASCII
    }
    return {
        value,
        quote_plus(value),
        quote(value, safe=""),
        base64.b64encode(utf8).decode(),
        base64.urlsafe_b64encode(utf8).decode(),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(value)[1:-1])[1:-1],  # JSON in a JSON string: an echoed body
        *escaped,
        *(spelling.replace("'", "\\'") for spelling in escaped),
    }


class Redactor(logging.Filter):
    """A logging filter that replaces every known secret value in a record's message.

    Secrets are kept for good; tokens and assertions for as long as they
    live (`keep_for`), so every live one is cut out however many there are.
    Log records may be redacted in other threads: what they read is only
    ever replaced whole, never changed in place.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._until: dict[str, float] = {}
        """Each value, with the time until which it is cut out."""
        self._expiries: list[tuple[float, str]] = []
        """A heap of (until, value); stale when the value was added again since."""
        self._users: dict[str, int] = {}
        """Each spelling, with how many values spell that way."""
        self._by_tail: dict[str, tuple[str, ...]] = {}
        """The spellings, by their last characters."""
        self._few: tuple[str, ...] = ()
        """All spellings, longest first, while there are at most FEW of them."""

    def add(self, *values: str, keep_for: float = math.inf) -> None:
        """Cut these values (and their spellings) out of text for `keep_for` seconds."""
        now = self._clock()
        until = now + keep_for
        for value in values:
            known = self._until.get(value)
            if known is None:
                self._count(value, +1)
            if known is None or known < until:
                self._until[value] = until
                if until < math.inf:
                    heapq.heappush(self._expiries, (until, value))
        while self._expiries and self._expiries[0][0] <= now:
            expiry, value = heapq.heappop(self._expiries)
            if self._until.get(value) == expiry:
                del self._until[value]
                self._count(value, -1)
        self._few = tuple(sorted(self._users, key=len, reverse=True)) if self.few else ()

    @property
    def few(self) -> bool:
        return len(self._users) <= FEW

    def _count(self, value: str, change: int) -> None:
        for spelling in spellings(value):
            if len(spelling) < SHORTEST:
                continue
            users = self._users.get(spelling, 0) + change
            tail = spelling[-SHORTEST:]
            bucket = self._by_tail.get(tail, ())
            if users == 0:
                del self._users[spelling]
                bucket = tuple(s for s in bucket if s != spelling)
            elif users == 1 and change > 0:
                self._users[spelling] = users
                bucket = (*bucket, spelling)
            else:
                self._users[spelling] = users
            if bucket:
                self._by_tail[tail] = bucket
            else:
                self._by_tail.pop(tail, None)

    def redact(self, text: str) -> str:
        for spelling in self._candidates(text):
            if spelling in text:
                text = text.replace(spelling, REDACTED)
        return text

    def _candidates(self, text: str) -> tuple[str, ...] | list[str]:
        """The spellings that may occur in `text`, longest first.

        A search per spelling is quickest for a few; with thousands of live
        tokens, only those whose last characters occur in the text are searched.
        """
        if self.few:
            return self._few
        by_tail = self._by_tail
        tails = {text[i : i + SHORTEST] for i in range(len(text) - SHORTEST + 1)}
        found = [s for tail in tails & by_tail.keys() for s in by_tail.get(tail, ())]
        return sorted(found, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._users:
            message = record.getMessage()
            clean = self.redact(message)
            if clean != message:
                record.msg, record.args = clean, ()
        return True

    def install(self) -> None:
        """Guard every handler of the root logger, where mitmproxy's outputs hang."""
        for handler in logging.getLogger().handlers:
            if self not in handler.filters:
                handler.addFilter(self)

    def uninstall(self) -> None:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(self)
