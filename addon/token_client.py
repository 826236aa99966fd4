"""Token requests (RFC 6749 §4.4): asking a token endpoint for a client-credentials token."""

from __future__ import annotations

import asyncio
import base64
from urllib.parse import quote_plus, urlencode, urlsplit, urlunsplit

import httpx

from addon.errors import TokenError
from addon.rules import Credentials
from addon.token import Token, parse_token_response

MAX_RESPONSE_BYTES = 1 << 20
"""golang/oauth2 reads at most 1 MiB of a token response; so do we."""

DEFAULT_TIMEOUT = 10.0


def basic_credentials(client_id: str, client_secret: str) -> str:
    """HTTP Basic with id and secret form-urlencoded first (RFC 6749 §2.3.1)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(client_secret)}"
    return "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def token_request(creds: Credentials, style: str) -> tuple[dict[str, str], bytes]:
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
        headers["Authorization"] = basic_credentials(creds.client_id, creds.client_secret.reveal())
    else:
        form.append(("client_id", creds.client_id))
        if creds.client_secret:
            form.append(("client_secret", creds.client_secret.reveal()))
    return headers, urlencode(form).encode("ascii")


class TokenClient:
    """Fetches tokens over its own HTTP client: no proxy from the environment, no redirects.

    With `auth_style: auto` it behaves as golang/oauth2: HTTP Basic first,
    then the credentials in the body, and it remembers what worked per
    (token_url, client_id). When both fail, the error names both failures.
    Unlike golang/oauth2 it only tries the body when the endpoint answered:
    a refused connection or a timeout says nothing about the auth style.
    """

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.timeout = timeout
        self._http = httpx.AsyncClient(
            trust_env=False, follow_redirects=False, timeout=timeout, transport=transport
        )
        self._detected_styles: dict[tuple[str, str], str] = {}

    async def aclose(self) -> None:
        await self._http.aclose()

    async def fetch(self, creds: Credentials) -> Token:
        """One token, within `timeout` seconds for the whole exchange."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._authenticate_and_fetch(creds)
        except TimeoutError:
            raise TokenError(f"token endpoint did not answer within {self.timeout:g} s") from None

    async def _authenticate_and_fetch(self, creds: Credentials) -> Token:
        if creds.auth_style != "auto":
            return await self._exchange(creds, creds.auth_style)
        key = (creds.token_url, creds.client_id)
        if key in self._detected_styles:
            return await self._exchange(creds, self._detected_styles[key])
        try:
            token = await self._exchange(creds, "header")
            style = "header"
        except TokenError as header_error:
            if header_error.status is None:
                raise  # no answer at all says nothing about the auth style
            try:
                token = await self._exchange(creds, "params")
            except TokenError as params_error:
                raise TokenError(
                    f"client authentication failed both ways; in the header: {header_error}; "
                    f"in the body: {params_error.message}",
                    status=params_error.status,
                    error=params_error.error,
                    error_description=params_error.error_description,
                    error_uri=params_error.error_uri,
                ) from None
            style = "params"
        self._detected_styles[key] = style
        return token

    async def _exchange(self, creds: Credentials, style: str) -> Token:
        headers, body = token_request(creds, style)
        try:
            async with self._http.stream(
                "POST", creds.token_url, headers=headers, content=body
            ) as response:
                content = await _read_at_most(response, MAX_RESPONSE_BYTES)
        except httpx.HTTPError as e:
            raise TokenError(
                f"cannot reach the token endpoint {_without_query(creds.token_url)} "
                f"({type(e).__name__}: {e})"
            ) from None
        if response.is_redirect:
            raise TokenError(
                f"token endpoint answered HTTP {response.status_code}, a redirect, "
                "which is not followed",
                status=response.status_code,
            )
        return parse_token_response(
            response.status_code, response.headers.get("content-type", ""), content
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
