"""The trivial addon, having imported everything the real one imports: the cost of the imports."""

from __future__ import annotations

from typing import TYPE_CHECKING

import mitm_oauth.mitm.addon  # noqa: F401 - the point is the import

if TYPE_CHECKING:  # for the annotations alone: the variant imports nothing more
    from mitmproxy.http import HTTPFlow


class TrivialImports:
    def requestheaders(self, flow: HTTPFlow) -> None:
        flow.request.headers["Authorization"] = "Bearer fixed"
        flow.request.headers["Accept"] = "application/json"


addons = [TrivialImports()]
