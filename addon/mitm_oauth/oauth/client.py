"""Token requests (RFC 6749 §4.4): asking a token endpoint for a client-credentials token."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import logging
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import httpx

from ..errors import TokenError
from ..file_version import FileVersion
from ..model import AuthStyle, ClientCertificate, Credentials
from ..observe.exchange import (
    Exchange,
    redact_request_body,
    redact_request_headers,
    redact_token_response,
)
from ..observe.redaction import Redactor
from .dpop import DPoPKey, DPoPKeys, Nonces, proof
from .request import ClientAuth, TokenRequest, token_request
from .response import Token, parse_token_response
from .tls import certificate_version, tls_context

MAX_ERROR_FIELD = 500
"""Longest error field passed on; an endpoint's error page is not a description."""
MAX_EXCERPT = 200
"""Characters of a non-JSON error body, or of a non-standard error member, that are kept."""
MAX_RESPONSE_BYTES = 1 << 20
"""golang/oauth2 reads at most 1 MiB of a token response; so do we."""

DEFAULT_TIMEOUT = 10.0

KEPT_AFTER_EXPIRY = 600.0
"""Seconds a token is still cut out of logs after it expires (clocks differ)."""
KEPT_WITHOUT_EXPIRY = 86400.0
"""Seconds a token whose endpoint gave no `expires_in` is cut out of logs."""
KEPT_ASSERTION = 3600.0 + KEPT_AFTER_EXPIRY
"""Client assertions live at most an hour (`assertion_lifetime`)."""

log = logging.getLogger(__name__)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class TokenClient:
    """Fetches tokens over its own HTTP client: no proxy from the environment, no redirects.

    With `auth_style: auto` it behaves as golang/oauth2: HTTP Basic first,
    then the credentials in the body, and it remembers what worked per
    (token_url, client_id). When both fail, the error names both failures.
    Unlike golang/oauth2 it only tries the body after a refusal (4xx): a
    timeout, a refused connection or a 5xx says nothing about the auth style.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        redactor: Redactor | None = None,
        observer: Callable[[Credentials, Exchange], None] | None = None,
    ) -> None:
        self.timeout = timeout
        self._transport = transport
        self.redactor = redactor or Redactor()
        """Learns every secret and token this client handles, to scrub them from text."""
        self.observer = observer
        """Sees every exchange, redacted: for showing them to an operator."""
        self._clients: dict[tuple[str | None, ClientCertificate | None], _Pool] = {}
        self._retired: list[tuple[float, httpx.AsyncClient]] = []
        """Pools replaced by a renewed certificate, with when: exchanges may still use them."""
        self._detected_styles: dict[tuple[str, str], AuthStyle] = {}
        self.dpop_keys = DPoPKeys()
        """The keys DPoP credential sets sign their proofs with; API requests use them too."""
        self.nonces = Nonces()
        """The newest DPoP nonce of each token endpoint."""

    async def aclose(self) -> None:
        for client in [p.client for p in self._clients.values()] + [c for _, c in self._retired]:
            await client.aclose()
        self._clients.clear()
        self._retired.clear()

    async def _client(self, creds: Credentials) -> httpx.AsyncClient:
        """One HTTP client (and connection pool) per trust store and client certificate.

        A pool is made anew when the certificate or key file has changed; the
        old one is closed once no exchange can still be using it (after `timeout`).
        """
        now = time.monotonic()
        while self._retired and now - self._retired[0][0] > self.timeout:
            await self._retired.pop(0)[1].aclose()
        key = (creds.ca_file, creds.client_certificate)
        certificate = creds.client_certificate
        version = certificate_version(certificate) if certificate else None
        pool = self._clients.get(key)
        if pool is not None and pool.version == version:
            return pool.client
        try:
            context = tls_context(creds.ca_file, certificate)
        except ValueError as e:
            raise TokenError(f"cannot set up TLS to the token endpoint: {e}") from None
        client = httpx.AsyncClient(
            trust_env=False,
            follow_redirects=False,
            verify=context,
            timeout=None,  # noqa: S113 - fetch() puts one deadline on the whole exchange
            transport=self._transport,
        )
        self._clients[key] = _Pool(version, client)
        if pool is not None:
            self._retired.append((now, pool.client))
        return client

    async def fetch(self, creds: Credentials) -> Token:
        """One token, within `timeout` seconds for the whole exchange."""
        auth = ClientAuth.of(creds)
        self.redactor.add(*auth.secrets(), *(value for _, value in creds.token_headers))
        try:
            async with asyncio.timeout(self.timeout):
                token = await self._authenticate_and_fetch(creds, auth)
        except TimeoutError:
            raise TokenError(f"token endpoint did not answer within {self.timeout:g} s") from None
        except TokenError as e:
            raise _scrubbed(e, self.redactor) from None
        return token

    async def _authenticate_and_fetch(self, creds: Credentials, auth: ClientAuth) -> Token:
        if creds.auth_style is not AuthStyle.AUTO:
            return await self._exchange(creds, auth, creds.auth_style)
        key = (creds.token_url, auth.client_id)
        if key in self._detected_styles:
            return await self._exchange(creds, auth, self._detected_styles[key])
        try:
            style = AuthStyle.HEADER
            token = await self._exchange(creds, auth, style)
        except TokenError as header_error:
            if not header_error.permanent:
                raise  # a timeout, 5xx or 429 says nothing about the auth style
            try:
                token = await self._exchange(creds, auth, AuthStyle.PARAMS)
            except TokenError as params_error:
                # The endpoint's error fields from the attempt that has them: some answer
                # the second attempt without a JSON body.
                fields = params_error if params_error.error else header_error
                raise dataclasses.replace(
                    fields,
                    message=f"client authentication failed both ways; in the header: "
                    f"{header_error}; in the body: {params_error.message}",
                ) from None
            style = AuthStyle.PARAMS
        self._detected_styles[key] = style
        return token

    async def _exchange(self, creds: Credentials, auth: ClientAuth, style: AuthStyle) -> Token:
        if creds.dpop is None:
            return await self._attempt(creds, auth, style)
        try:
            key = self.dpop_keys.key(creds)
        except ValueError as e:
            raise TokenError(f"cannot sign DPoP proofs: {e}") from None
        nonce = self.nonces.get(creds.token_url)
        try:
            return await self._attempt(creds, auth, style, key)
        except TokenError as e:
            # RFC 9449 §8: the server wants its nonce in the proof; once, with the one it sent.
            fresh = self.nonces.get(creds.token_url)
            if e.error != "use_dpop_nonce" or fresh is None or fresh == nonce:
                raise
        return await self._attempt(creds, auth, style, key)

    async def _attempt(
        self, creds: Credentials, auth: ClientAuth, style: AuthStyle, key: DPoPKey | None = None
    ) -> Token:
        dpop = None
        if key is not None:
            nonce = self.nonces.get(creds.token_url)
            dpop = proof(key, "POST", creds.token_url, nonce=nonce)
        request = token_request(creds, auth, style, dpop_proof=dpop)
        self.redactor.add(*request.secrets, keep_for=KEPT_ASSERTION)
        started = time.time()
        response: httpx.Response | None = None
        content = b""
        problem: str | None = "no answer before the deadline"
        try:
            try:
                client = await self._client(creds)
                async with client.stream(
                    "POST", creds.token_url, headers=request.headers, content=request.body
                ) as response:
                    content = await _read_at_most(response, MAX_RESPONSE_BYTES)
            except httpx.HTTPError as e:
                raise TokenError(
                    f"cannot reach the token endpoint {_without_query(creds.token_url)} "
                    f"({type(e).__name__}: {e})"
                ) from None
            if key is not None:
                self.nonces.update(creds.token_url, response.headers.get("DPoP-Nonce"))
            token = _token_from(response, content)
            if key is not None and token.token_type.lower() != "dpop":
                raise TokenError(
                    f"token endpoint answered a DPoP request with a {token.token_type} token: "
                    "it ignored the proof (is DPoP enabled for this client?)",
                    status=response.status_code,
                )
            lifetime = token.expires_in or KEPT_WITHOUT_EXPIRY
            # Before the exchange is shown, and for as long as the token may be in use.
            self.redactor.add(token.access_token.reveal(), keep_for=lifetime + KEPT_AFTER_EXPIRY)
            problem = None
            return token
        except TokenError as e:
            problem = str(_scrubbed(e, self.redactor))
            raise
        finally:
            if self.observer is not None:
                self._report(creds, request, started, response, content, problem)

    def _report(
        self,
        creds: Credentials,
        request: TokenRequest,
        started: float,
        response: httpx.Response | None,
        content: bytes,
        problem: str | None,
    ) -> None:
        """Tell the observer about one exchange, with every secret cut out."""
        assert self.observer is not None
        exchange = Exchange(
            method="POST",
            url=creds.token_url,
            request_headers=redact_request_headers(request.headers, self.redactor),
            request_body=redact_request_body(request.headers["Content-Type"], request.body),
            started=started,
            ended=time.time(),
            error=problem,
        )
        if response is not None and response.is_stream_consumed:  # a whole answer came back
            content_type = response.headers.get("content-type", "")
            exchange = dataclasses.replace(
                exchange,
                status=response.status_code,
                reason=response.reason_phrase,
                response_headers=[
                    (name, self.redactor.redact(value))
                    for name, value in response.headers.multi_items()
                ],
                response_body=redact_token_response(content_type, content, self.redactor),
                error=None,
            )
        try:
            self.observer(creds, exchange)
        except Exception:
            log.exception("the token exchange observer failed")


def _token_from(response: httpx.Response, content: bytes) -> Token:
    if response.is_redirect:
        raise TokenError(
            f"token endpoint answered HTTP {response.status_code}, a redirect, "
            "which is not followed",
            status=response.status_code,
        )
    try:
        return parse_token_response(
            response.status_code, response.headers.get("content-type", ""), content
        )
    except TokenError as e:
        e.retry_after = parse_retry_after(response.headers.get("retry-after"))
        raise


def _scrubbed(error: TokenError, redactor: Redactor) -> TokenError:
    """The error with any spelling of a secret replaced (some endpoints echo what they got),
    and the endpoint's fields cut to MAX_ERROR_FIELD characters, in that order: a secret
    that straddled the cut would otherwise leave its first part behind."""

    def scrub(text: str | None) -> str | None:
        return None if text is None else redactor.redact(text)

    def bounded(text: str | None, limit: int = MAX_ERROR_FIELD) -> str | None:
        text = scrub(text)
        return text if text is None or len(text) <= limit else text[:limit] + "…"

    return dataclasses.replace(
        error,
        message=redactor.redact(error.message),
        error=bounded(error.error),
        error_description=bounded(error.error_description),
        error_uri=bounded(error.error_uri),
        body_excerpt=bounded(error.body_excerpt, MAX_EXCERPT),
        extra=tuple(
            (bounded(name, 64) or "", bounded(value, MAX_EXCERPT) or "")
            for name, value in error.extra
        ),
    )


def _without_query(url: str) -> str:
    """The URL for messages: a query string might carry something secret."""
    return urlunsplit(urlsplit(url)._replace(query=""))


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    content = bytearray()
    async for chunk in response.aiter_bytes():
        content += chunk
        if len(content) > limit:
            raise TokenError(
                f"token endpoint response is larger than {limit} bytes",
                status=response.status_code,
            )
    return bytes(content)


class _Pool(NamedTuple):
    version: tuple[FileVersion | None, FileVersion | None] | None
    """The client certificate files' versions the pool was made with."""
    client: httpx.AsyncClient
