"""What the addon did to a flow, said where operators look: its comment and its metadata."""

from __future__ import annotations

from mitmproxy import http

METADATA = "oauth"
"""The `flow.metadata` key for what the addon did to a flow."""


def annotate(flow: http.HTTPFlow, metadata: dict[str, object], comment: str) -> None:
    """Say what the addon did, in the flow list (comment) and as data (metadata)."""
    flow.metadata[METADATA] = metadata
    flow.comment = f"oauth: {comment}"
