"""OAuth 2.0 client-credentials tokens for any app, through mitmproxy.

- `model`: rules, credential sets and auth styles, as plain data.
- `config`: rules files into the model (the field table, loading, validation, file checks).
- `matching`: which rule covers a request's real destination, and why (not).
- `oauth`: token requests, responses, the client and the cache.
- `injection`: the headers a rule's requests get with a token.
- `observe`: redaction, the event log, token exchanges and status as operators see them.
- `mitm`: the mitmproxy side, the only part that imports mitmproxy.
- `cli`, `run`: the `mitm-oauth` command, and its `run` that puts a command behind the proxy.

docs/architecture.md follows one request and one rules file through them.
"""
