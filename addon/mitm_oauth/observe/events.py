"""JSON-lines event log: one line per token fetch, failure, purge and rules reload."""

from __future__ import annotations

import datetime
import json
import threading
from pathlib import Path
from typing import TextIO

from .redaction import Redactor


class EventLog:
    """Appends events to a file as JSON lines, for CI artefacts and log shippers.

    Events carry fingerprints, never secrets or tokens; every line also passes
    the redactor, as every log record does.
    """

    def __init__(self, path: str, redactor: Redactor) -> None:
        self.path = path
        self._redactor = redactor
        self._lock = threading.Lock()
        self._file: TextIO = Path(path).open("a", encoding="utf-8")  # noqa: SIM115 - kept open

    def write(self, event: dict[str, object]) -> None:
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")
        line = self._redactor.redact(json.dumps({"time": now, **event}, default=str))
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
