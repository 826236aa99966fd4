"""Which responses reach the client as they arrive, rather than once mitmproxy has them whole.

mitmproxy holds a response until its body is complete unless told otherwise: a
server-sent event stream then never arrives, and a long download arrives at
once, at the end. Streaming costs the flow its response body: mitmweb shows
none and a saved flow holds none. `oauth_stream_responses` chooses:

- `events` (the default): server-sent events stream; they have no end to wait for.
- `all`: every response streams, what `mitm-oauth run` sets: the app sees the
  network as it is.
- `off`: mitmproxy decides alone (`stream_large_bodies`).

A response the addon may replace stays whole: an upstream's 401 to a request
that `retry_on_401` may replay, or to a DPoP rule's request (it may ask for a nonce).
"""

from __future__ import annotations

from mitmproxy import ctx, http

from .injector import Injector

CHOICES = ("events", "all", "off")
EVENT_STREAM = "text/event-stream"


class Streaming:
    """Marks responses to stream as their headers arrive. A part of the main addon."""

    def __init__(self, injector: Injector) -> None:
        self.injector = injector
        self.choice = "events"
        """`oauth_stream_responses`, read per response: kept at hand."""

    def configure(self) -> None:
        self.choice = ctx.options.oauth_stream_responses

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        if response is None or response.stream or self.choice == "off":
            return
        content_type = response.headers.get("content-type", "")
        if self.choice == "events" and not content_type.startswith(EVENT_STREAM):
            return
        given = self.injector.injections.get(flow)
        rule = given.rule if given is not None else None
        if rule and rule.retry_on_401 and response.status_code in rule.purge_on_status:
            return  # a replay may take its place
        if rule and rule.credentials.dpop is not None and response.status_code == 401:
            return  # as it may when it asks for a DPoP nonce
        response.stream = True
