"""The last word on a request that carries a token, after every other addon has had its say.

mitmproxy runs a script's hooks before its own `map_remote`, `map_local`,
`modify_headers` and `stickyauth`, and before scripts loaded later: any of them
may change where a request goes, or its Host header, after the token went on,
and `stickyauth` copies a token to other requests to the same host. This addon
is added at the end of mitmproxy's addon chain, so it sees each request as it
will be sent.
"""

from __future__ import annotations

from collections.abc import Callable

from mitmproxy import http


class FinalCheck:
    name = "oauth_final_check"

    def __init__(self, check: Callable[[http.HTTPFlow], None]) -> None:
        self.check = check
        """Refuses a request that no longer goes where its token was given for."""

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        self.check(flow)  # a streamed request is sent right after this hook

    def request(self, flow: http.HTTPFlow) -> None:
        if not flow.request.stream:  # a streamed one has been sent already
            self.check(flow)
