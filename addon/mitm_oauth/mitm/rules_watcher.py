"""The rules file: loaded when `oauth_rules` is set, and again whenever it changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from mitmproxy import ctx, exceptions

from ..config.load import load_rules
from ..config.speedups import keep_unchanged
from ..errors import RulesError
from ..file_version import FileVersion, file_version
from ..matching.index import RuleIndex

log = logging.getLogger(__name__)

RELOAD_INTERVAL = 1.0
"""Seconds between checks of the rules file for changes."""


class RulesWatcher:
    """Holds the rules in force and swaps in new ones; a broken file never replaces them.

    A part of the main addon, which calls its hooks: see `ClientCredentials` for why.
    """

    def __init__(
        self,
        adopt: Callable[[RuleIndex], None],
        record: Callable[[dict[str, object]], None],
        tick: Callable[[], None],
    ) -> None:
        self.adopt = adopt
        """Hands new rules to the parts that use them; called at each swap."""
        self.record = record
        """Writes an event to the JSON event log."""
        self.tick = tick
        """Runs once a second beside the check: work that requests should not each do."""
        self.rules: RuleIndex | None = None
        """None until a rules file has loaded: until then every request is refused."""
        self._version: FileVersion | None = None
        self._task: asyncio.Task[None] | None = None

    def configure(self, updated: set[str], started: bool) -> None:
        if "oauth_rules" not in updated:
            return
        try:
            self.load()
        except RulesError as e:
            if started:  # a live change: refuse it, the previous rules stay
                raise exceptions.OptionsError(str(e)) from None
            # At start-up, mitmproxy prints a raised error with a traceback;
            # an error log line stops it just as well, and reads better.
            log.error("%s", e)

    def load(self) -> None:
        """Read the rules file and swap the new rules in at once; raises RulesError."""
        path = ctx.options.oauth_rules
        self.use(path, file_version(path), read_rules(path, self.rules))

    def use(self, path: str, version: FileVersion | None, index: RuleIndex) -> None:
        self.rules = index
        self._version = version
        self.adopt(index)
        log.info("%d rule(s) loaded from %s", len(index), path)
        self.record({"event": "reload", "file": path, "rules": [r.name for r in index.rules]})

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.watch())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def watch(self) -> None:
        """Reload the rules file when it changes; a broken edit leaves the old rules active.

        The file is read and indexed in a thread, so that traffic goes on while
        a large rules file loads, and the retired rules are freed in one too;
        the swap itself is one assignment.
        """
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            try:
                self.tick()
                await self.reload_if_changed()
            except Exception:  # a bug of ours must not end the watching: rules may be removed
                log.exception("rules reload failed; the previous rules stay active")
                self._version = file_version(ctx.options.oauth_rules)  # report it once

    async def reload_if_changed(self) -> None:
        path = ctx.options.oauth_rules
        version = file_version(path)
        if not ctx.options.oauth_reload or version == self._version:
            return
        try:
            index = await asyncio.to_thread(read_rules, path, self.rules)
        except RulesError as e:
            self._version = version  # report each broken edit once
            log.error("%s; the previous rules stay active", e)
            self.record(
                {
                    "event": "reload_failed",
                    "file": e.file,
                    "rule": e.rule,
                    "field": e.field,
                    "message": e.message,
                }
            )
            return
        retired = self.rules
        self.use(path, version, index)
        if retired is not None:
            await asyncio.to_thread(retired.dismantle)


def read_rules(path: str, previous: RuleIndex | None = None) -> RuleIndex:
    """The rules of a file, indexed, unchanged ones taken from `previous`; raises RulesError."""
    rules = load_rules(path)
    return RuleIndex(rules if previous is None else keep_unchanged(rules, previous.rules))
