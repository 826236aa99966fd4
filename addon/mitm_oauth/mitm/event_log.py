"""`oauth_log_json`: the JSON event log, opened and closed as the option says."""

from __future__ import annotations

from mitmproxy import ctx, exceptions

from ..observe.events import EventLog
from ..observe.redaction import Redactor


class EventRecorder:
    """Writes the cache's and the rules watcher's events while `oauth_log_json` names a file.

    A part of the main addon, which calls its hooks: see `ClientCredentials` for why.
    """

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self.log: EventLog | None = None
        """None while no file is named: events are then dropped."""

    def configure(self, updated: set[str]) -> None:
        if "oauth_log_json" not in updated:
            return
        self.done()
        path = ctx.options.oauth_log_json
        try:
            self.log = EventLog(path, self.redactor) if path else None
        except OSError as e:
            raise exceptions.OptionsError(f"oauth_log_json: cannot open {path}: {e}") from None

    def record(self, event: dict[str, object]) -> None:
        if self.log is not None:
            self.log.write(event)

    def done(self) -> None:
        if self.log is not None:
            self.log.close()
