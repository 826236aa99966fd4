"""The trivial addon with the real one's other per-flow hooks, doing nothing: dispatch cost."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotations alone: the variant imports nothing more
    from mitmproxy.http import HTTPFlow


class TrivialHooks:
    def requestheaders(self, flow: HTTPFlow) -> None:
        flow.request.headers["Authorization"] = "Bearer fixed"
        flow.request.headers["Accept"] = "application/json"

    def response(self, flow: HTTPFlow) -> None:
        return None

    def error(self, flow: HTTPFlow) -> None:
        return None


addons = [TrivialHooks()]
