"""A last line of defence: secrets and tokens are cut out of every log record.

Our own messages never contain them; this catches what others print, such as
mitmproxy's `proxy_debug` output, which logs every byte sent upstream, and
what token endpoints echo back in their error descriptions.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from urllib.parse import quote, quote_plus

from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

REDACTED = "[redacted]"
SHORTEST = 4
"""Shorter spellings are not cut out: that would mangle every message."""
FEW = 256
"""Up to this many spellings, each is looked for in turn; beyond, by their last characters."""
CUT = "…"
"""How mitmproxy marks a debug line it cut short (at 2,048 characters, or 256 when repeated)."""
_HUFFMAN = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)


def spellings(value: str, header: bool = False) -> set[str]:
    """How a value may appear in text: raw, URL-, base64-, JSON- and Python-escaped.

    Python's escapes are those of `repr()` for text and for bytes (proxy_debug
    logs what it sends as bytes), with and without an escaped single quote.
    A `header` value is also spelt in HPACK's Huffman code, in which HTTP/2
    and HTTP/3 send a header's whole value.
    """
    utf8 = value.encode()
    escaped = {
        value.encode("unicode_escape").decode("ascii"),  # repr() of text
        utf8.decode("latin-1").encode("unicode_escape").decode("ascii"),  # repr() of bytes
        value.replace("\\", "\\\\"),  # repr() of text that keeps printable non-ASCII
    }
    if header:
        huffman = repr(_HUFFMAN.encode(utf8) + b'"')[2:-2]  # in single quotes: \' escaped
        escaped |= {huffman, huffman.replace("\\'", "'")}
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
    Log records may be redacted in other threads, hence the lock.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._lock = threading.RLock()
        self._until: dict[str, float] = {}
        """Each value, with the time until which it is cut out."""
        self._expiries: list[tuple[float, str]] = []
        """A heap of (until, value); stale when the value was added again since."""
        self._headers: set[str] = set()
        """The values added as whole header values."""
        self._users: dict[str, int] = {}
        """Each spelling, with how many values spell that way."""
        self._by_tail: dict[str, set[str]] = {}
        """The spellings, by their last characters: which to look for in a text."""
        self._heads: dict[str, int] = {}
        """The spellings' first characters, with how many start so."""
        self._sorted: list[str] = []
        """The spellings in order: to find one that a cut left the start of."""
        self._longest = 0
        self._few: tuple[str, ...] = ()
        """All spellings, longest first, while there are at most FEW of them."""

    def add(self, *values: str, keep_for: float = math.inf, header: bool = False) -> None:
        """Cut these values (and their spellings) out of text for `keep_for` seconds.

        `header`: the values are whole header values, as a request carries them.
        """
        with self._lock:
            now = self._clock()
            until = now + keep_for
            for value in values:
                known = self._until.get(value)
                if header and value not in self._headers:
                    if known is not None:  # spelt anew: with the header's spellings too
                        self._count(value, -1)
                    self._headers.add(value)
                    self._count(value, +1)
                elif known is None:
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
                    self._headers.discard(value)
            self._few = tuple(sorted(self._users, key=len, reverse=True)) if self.few else ()

    @property
    def few(self) -> bool:
        return len(self._users) <= FEW

    def _count(self, value: str, change: int) -> None:
        for spelling in spellings(value, value in self._headers):
            if len(spelling) < SHORTEST:
                continue
            users = self._users.get(spelling, 0) + change
            head, tail = spelling[:SHORTEST], spelling[-SHORTEST:]
            if users == 1 and change > 0:  # a new spelling
                self._by_tail.setdefault(tail, set()).add(spelling)
                self._heads[head] = self._heads.get(head, 0) + 1
                bisect.insort(self._sorted, spelling)
                self._longest = max(self._longest, len(spelling))
            elif users == 0:  # a spelling no value has any more
                self._by_tail[tail].discard(spelling)
                if not self._by_tail[tail]:
                    del self._by_tail[tail]
                self._heads[head] -= 1
                if not self._heads[head]:
                    del self._heads[head]
                del self._sorted[bisect.bisect_left(self._sorted, spelling)]
            if users:
                self._users[spelling] = users
            else:
                del self._users[spelling]

    def redact(self, text: str) -> str:
        with self._lock:
            for spelling in self._candidates(text):
                if spelling in text:
                    text = text.replace(spelling, REDACTED)
            if CUT in text:
                parts = text.split(CUT)
                ends = [self._without_a_started_spelling(part) for part in parts[:-1]]
                text = CUT.join([*ends, parts[-1]])
            return text

    def _without_a_started_spelling(self, text: str) -> str:
        """`text` without the start of a spelling at its end, where a cut left it."""
        for start in range(max(0, len(text) - self._longest), len(text) - SHORTEST + 1):
            if text[start : start + SHORTEST] not in self._heads:
                continue
            rest = text[start:]
            at = bisect.bisect_left(self._sorted, rest)
            if at < len(self._sorted) and self._sorted[at].startswith(rest):
                return text[:start] + REDACTED
        return text

    def _candidates(self, text: str) -> tuple[str, ...] | list[str]:
        """The spellings that may occur in `text`, longest first.

        A search per spelling is quickest for a few; with thousands of live
        tokens, only those whose last characters occur in the text are searched.
        """
        if self._few:
            return self._few
        by_tail = self._by_tail
        tails = {text[i : i + SHORTEST] for i in range(len(text) - SHORTEST + 1)}
        found = [s for tail in tails & by_tail.keys() for s in by_tail[tail]]
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
