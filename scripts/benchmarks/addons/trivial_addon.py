"""The floor for any addon: a hook that only sets two fixed headers."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotations alone: the variant imports nothing more
    from mitmproxy.http import HTTPFlow


class Trivial:
    def requestheaders(self, flow: HTTPFlow) -> None:
        flow.request.headers["Authorization"] = "Bearer fixed"
        flow.request.headers["Accept"] = "application/json"


addons = [Trivial()]
