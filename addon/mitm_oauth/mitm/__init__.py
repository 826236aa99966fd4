"""The mitmproxy side: one addon in the chain, and the parts it forwards hooks to."""
