"""The token side of client credentials (RFC 6749 §4.4): request, response, client, cache."""
