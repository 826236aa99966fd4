"""A last line of defence: secrets and tokens are cut out of every log record.

Our own messages never contain them; this catches what others print, such as
mitmproxy's `proxy_debug` output, which logs every byte sent upstream.
"""

from __future__ import annotations

import base64
import logging
from collections import OrderedDict
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
MAX_VALUES = 4096
"""The most recent secrets and tokens are remembered; older tokens have expired."""


def spellings(value: str) -> set[str]:
    """How a value may appear on the wire: raw, form-encoded, percent-encoded, base64."""
    return {
        value,
        quote_plus(value),
        quote(value, safe=""),
        base64.b64encode(value.encode()).decode(),
    }


class Redactor(logging.Filter):
    """A logging filter that replaces every known secret value in a record's message."""

    def __init__(self) -> None:
        super().__init__()
        self._values: OrderedDict[str, None] = OrderedDict()
        self._ordered: list[str] = []

    def add(self, *values: str) -> None:
        """Remember these values (and their spellings) until MAX_VALUES newer ones arrive."""
        for value in values:
            for spelling in spellings(value):
                if len(spelling) >= 4:  # shorter would mangle every message
                    self._values[spelling] = None
                    self._values.move_to_end(spelling)
        while len(self._values) > MAX_VALUES:
            self._values.popitem(last=False)
        self._ordered = sorted(self._values, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._ordered:
            if value in text:
                text = text.replace(value, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self._ordered:
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
