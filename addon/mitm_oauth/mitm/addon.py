"""mitmproxy glue: `mitmdump -s addon/client_credentials.py --set oauth_rules=rules.yaml`.

Everything that decides something lives in the pure modules outside `mitm/`;
the parts beside this file map mitmproxy's options, hooks and flows onto them,
and this one addon hands each hook to the parts that need it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import server_hooks

from ..matching.index import RuleIndex
from ..model import Credentials
from ..oauth.cache import Fetch, TokenCache
from ..oauth.client import TokenClient
from ..oauth.dpop import RequestProofs
from ..oauth.response import Token
from ..observe.redaction import Redactor
from ..observe.status import summary
from . import options
from .allowed_clients import AllowedClients
from .commands import Commands
from .event_log import EventRecorder
from .exchange_view import EXCHANGE, ExchangeView
from .final_check import REWRITING_OPTIONS, FinalCheck
from .injector import Injector
from .refusals import Refusals
from .refuser import Refuser
from .responses import Responses
from .rules_watcher import RulesWatcher
from .self_access import SelfAccess
from .sharing import Sharing
from .streaming import Streaming

log = logging.getLogger(__name__)

# httpx logs every request at INFO, with its URL, and httpcore its traffic at
# DEBUG: the token exchange is ours to log.
for _noisy in ("httpx", "httpcore"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class ClientCredentials:
    """The one addon mitmproxy calls; its parts get their hooks through it.

    Each object in mitmproxy's addon chain costs a step on every event of
    every request, hook or not: three parts as addons of their own cost 1.1 %
    more instructions per request (counted under callgrind). The final check
    is the exception: it must come last.
    """

    def __init__(self, fetch: Fetch | None = None) -> None:
        """`fetch`: how tokens are fetched; the token endpoints themselves (`TokenClient`)
        unless a test or benchmark gives its own."""
        self.refusals = Refusals()
        """Answers the requests this addon refuses, in place of their upstream."""
        self.clients = AllowedClients()
        """Who may have the requests this addon gives tokens to."""
        self.self_access = SelfAccess(self.refusals)
        """Refuses requests to this mitmproxy itself, before anything else is done with them."""
        self.redactor = Redactor()
        self.events = EventRecorder(self.redactor)
        self.client = TokenClient(redactor=self.redactor)
        self.cache = TokenCache(fetch or self.fetch_token, on_event=self.events.record)
        self.sharing = Sharing(self.cache, self.client, self.events)
        """The token store shared with other processes, if `oauth_store` names one."""
        self.client.observer = ExchangeView(self.cache).show
        self.refuser = Refuser(self.refusals)
        self.injector = Injector(
            self.cache,
            self.redactor,
            self.clients,
            self.refuser,
            RequestProofs(self.client.dpop_keys),
        )
        self.responses = Responses(self.injector, self.cache)
        self.streaming = Streaming(self.injector)
        self.final_check = FinalCheck(self.injector, self.refuser)
        self.watcher = RulesWatcher(self.use_rules, self.events.record, self.self_access.refresh)
        self.commands = Commands(self.cache, self.injector, self.sharing)
        self.started = False
        self._closing: asyncio.Task[None] | None = None

    def load(self, loader: Loader) -> None:
        self.clients.load(loader)
        self.refusals.load(loader)
        options.add_options(loader)
        for problem in options.apply_given(loader.master.options):
            log.error("%s", problem)  # mitmdump stops on errors logged while it starts
        loader.master.commands.collect_commands(self.commands)

    def configure(self, updated: set[str]) -> None:
        try:
            options.check(updated)
        except exceptions.OptionsError as e:
            if self.started:  # a live change: mitmproxy refuses it and keeps the old value
                raise
            log.error("%s", e)  # at start-up: one line, and mitmdump stops (no traceback)
            return
        options.configure_fetching(self.cache, self.client)
        try:
            self.sharing.configure(updated)
        except exceptions.OptionsError as e:
            if self.started:
                raise
            log.error("%s", e)
            return
        self.responses.configure(updated)
        self.streaming.configure()
        self.clients.configure(updated)
        if self.started and updated & {*REWRITING_OPTIONS, "scripts"}:
            self.final_check.place()
        self.events.configure(updated)
        self.watcher.configure(updated, self.started)

    def running(self) -> None:
        for problem in options.unknown_options(ctx.options):
            log.error("%s", problem)
        self.started = True
        self.refusals.running()
        self.final_check.place()
        self.redactor.install()
        self.watcher.start()
        self.sharing.running()
        self.sharing.prefetch(list(self.cache.credential_sets()))

    def done(self) -> None:
        """Synchronous: mitmproxy calls `done` from a synchronous context when it reloads the
        script (an async one raised there, and the reloaded script never came back)."""
        self.responses.done()  # flows in flight are saved after this: not with their token
        self.final_check.place(needed=False)
        self.watcher.stop()
        log.info("%s", summary(self.cache.status(), self.injector.injected, self.refuser.refused))
        self.redactor.uninstall()
        self.events.done()
        self.refusals.done()
        self._closing = asyncio.get_running_loop().create_task(self.close_clients())

    async def close_clients(self) -> None:
        await self.client.aclose()
        await self.responses.replayer.aclose()
        await self.sharing.done()

    async def fetch_token(self, creds: Credentials) -> Token:
        """The cache's way to a token: the shared store, or the token endpoint."""
        return await self.sharing.fetch(creds)

    def use_rules(self, index: RuleIndex) -> None:
        """Hand newly loaded rules to the parts that use them."""
        self.cache.use(index.credential_sets)
        self.injector.use(index)
        if self.started:  # at start-up, `running` prefetches
            self.sharing.prefetch(list(index.credential_sets))

    def http_connect(self, flow: http.HTTPFlow) -> None:
        self.self_access.http_connect(flow)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> Awaitable[None]:
        return self.self_access.server_connect(data)

    def requestheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Inject before the request is sent on, so a streamed body cannot outrun us.

        Synchronous while the token is cached, which is nearly always; when it
        must be fetched, returns a coroutine that mitmproxy awaits before it
        sends the request.
        """
        if flow.metadata.get(EXCHANGE):  # shown, never sent: not even on a replay from the UI
            flow.kill()
            return None
        if flow.response is not None or flow.error is not None or self.refusals.diverted(flow):
            return None
        if self.self_access.refuse_if_self(flow):
            return None
        try:
            return self.injector.inject(flow)
        except Exception:  # a bug of ours must not let the request go without its token
            self.refuser.fail_closed(flow)
            return None

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self.streaming.responseheaders(flow)

    def response(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        self.refusals.restore(flow)
        return self.responses.response(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self.refusals.restore(flow)
        self.responses.error(flow)
