"""Token requests (RFC 6749 §4.4): asking a token endpoint for a client-credentials token."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import email.utils
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

import httpx

from addon.errors import TokenError
from addon.exchange import Exchange, redact_form, redact_request_headers, redact_token_response
from addon.redaction import Redactor
from addon.rules import Credentials
from addon.token import Token, parse_token_response

MAX_RESPONSE_BYTES = 1 << 20
"""golang/oauth2 reads at most 1 MiB of a token response; so do we."""

DEFAULT_TIMEOUT = 10.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientAuth:
    """A credential set's id and secret, read once per fetch (files may have rotated)."""

    client_id: str
    client_secret: str

    @classmethod
    def of(cls, creds: Credentials) -> ClientAuth:
        try:
            return cls(creds.client_id.reveal(), creds.client_secret.reveal())
        except ValueError as e:  # a *_file that is missing, unreadable or empty
            raise TokenError(
                f"client credentials unavailable: {e}", error="invalid_client"
            ) from None

    def __repr__(self) -> str:
        return "ClientAuth(…)"

    def secrets(self) -> tuple[str, str]:
        """The secret, and the id:secret pair as HTTP Basic encodes it."""
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self.client_secret)}"
        return self.client_secret, pair


def basic_credentials(client_id: str, client_secret: str) -> str:
    """HTTP Basic with id and secret form-urlencoded first (RFC 6749 §2.3.1)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def token_request(creds: Credentials, auth: ClientAuth, style: str) -> tuple[dict[str, str], bytes]:
    """Headers and form body of one attempt, with the client authenticated by `style`.

    `style` is "header" (HTTP Basic) or "params" (id and secret in the body).
    In the params style our `client_id`/`client_secret` replace any that
    `endpoint_params` carries, as golang/oauth2's `url.Values.Set` does.
    """
    form = [("grant_type", "client_credentials")]
    if creds.scopes:
        form.append(("scope", " ".join(creds.scopes)))
    for name, values in creds.endpoint_params:
        if style == "params" and name in ("client_id", "client_secret"):
            continue
        form.extend((name, value) for value in values)
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "Accept": "application/json",
    }
    if style == "header":
        headers["Authorization"] = basic_credentials(auth.client_id, auth.client_secret)
    else:
        form.append(("client_id", auth.client_id))
        form.append(("client_secret", auth.client_secret))
    return headers, urlencode(form).encode("ascii")


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
        self._clients: dict[str | None, httpx.AsyncClient] = {}
        self._detected_styles: dict[tuple[str, str], str] = {}

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    def _client(self, ca_file: str | None) -> httpx.AsyncClient:
        """One HTTP client (and connection pool) per trust store."""
        if ca_file not in self._clients:
            verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
            self._clients[ca_file] = httpx.AsyncClient(
                trust_env=False,
                follow_redirects=False,
                verify=verify,
                timeout=None,  # noqa: S113 - fetch() puts one deadline on the whole exchange
                transport=self._transport,
            )
        return self._clients[ca_file]

    async def fetch(self, creds: Credentials) -> Token:
        """One token, within `timeout` seconds for the whole exchange."""
        auth = ClientAuth.of(creds)
        self.redactor.add(*auth.secrets())
        try:
            async with asyncio.timeout(self.timeout):
                token = await self._authenticate_and_fetch(creds, auth)
        except TimeoutError:
            raise TokenError(f"token endpoint did not answer within {self.timeout:g} s") from None
        except TokenError as e:
            raise _scrubbed(e, self.redactor) from None
        self.redactor.add(token.access_token.reveal())
        return token

    async def _authenticate_and_fetch(self, creds: Credentials, auth: ClientAuth) -> Token:
        if creds.auth_style != "auto":
            return await self._exchange(creds, auth, creds.auth_style)
        key = (creds.token_url, auth.client_id)
        if key in self._detected_styles:
            return await self._exchange(creds, auth, self._detected_styles[key])
        try:
            token = await self._exchange(creds, auth, "header")
            style = "header"
        except TokenError as header_error:
            if not header_error.permanent:
                raise  # a timeout, 5xx or 429 says nothing about the auth style
            try:
                token = await self._exchange(creds, auth, "params")
            except TokenError as params_error:
                raise params_error.but(
                    message=f"client authentication failed both ways; in the header: "
                    f"{header_error}; in the body: {params_error.message}"
                ) from None
            style = "params"
        self._detected_styles[key] = style
        return token

    async def _exchange(self, creds: Credentials, auth: ClientAuth, style: str) -> Token:
        headers, body = token_request(creds, auth, style)
        started = time.time()
        response: httpx.Response | None = None
        content = b""
        problem: str | None = "no answer before the deadline"
        try:
            try:
                async with self._client(creds.ca_file).stream(
                    "POST", creds.token_url, headers=headers, content=body
                ) as response:
                    content = await _read_at_most(response, MAX_RESPONSE_BYTES)
            except httpx.HTTPError as e:
                raise TokenError(
                    f"cannot reach the token endpoint {_without_query(creds.token_url)} "
                    f"({type(e).__name__}: {e})"
                ) from None
            token = _token_from(response, content)
            problem = None
            return token
        except TokenError as e:
            problem = str(_scrubbed(e, self.redactor))
            raise
        finally:
            if self.observer is not None:
                self._report(creds, headers, body, started, response, content, problem)

    def _report(
        self,
        creds: Credentials,
        headers: dict[str, str],
        body: bytes,
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
            request_headers=redact_request_headers(headers),
            request_body=redact_form(body),
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
                response_headers=list(response.headers.multi_items()),
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
    """The error with any spelling of a secret replaced: some endpoints echo what they got."""

    def scrub(text: str | None) -> str | None:
        return None if text is None else redactor.redact(text)

    return error.but(
        message=scrub(error.message),
        error=scrub(error.error),
        error_description=scrub(error.error_description),
        error_uri=scrub(error.error_uri),
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
