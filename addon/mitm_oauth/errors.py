"""The two ways things go wrong: a bad rules file, and a token we could not get."""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass


class RulesError(ValueError):
    """A problem in a rules file, located by file, rule and field.

    The message never quotes a value that could be a secret.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str,
        rule: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.rule = rule
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.file]
        if self.rule is not None:
            where.append(f"rule {self.rule}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{': '.join(where)}: {self.message}"


PERMANENT_ERRORS = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
        "access_denied",
        "invalid_target",
    }
)
"""RFC 6749 §5.2 and RFC 8707 error codes: the request itself is wrong."""


TRANSIENT_STATUSES = (408, 425, 429)
"""Client errors that say "try again later", not "your request is wrong"."""


@dataclass(eq=False, repr=False)
class TokenError(Exception):
    """The token endpoint did not give us a usable token.

    Carries the RFC 6749 §5.2 error fields when the endpoint sent them. The
    message never contains a secret or a token: response bodies are described
    (type, size), never quoted. A dataclass so that `dataclasses.replace`
    makes a copy with a field changed; compared and hashed by identity, as
    exceptions are.
    """

    message: str
    _: KW_ONLY
    status: int | None = None
    error: str | None = None
    error_description: str | None = None
    error_uri: str | None = None
    retry_after: float | None = None
    """Seconds the endpoint asked us to wait (`Retry-After`)."""
    body_excerpt: str | None = None
    """The start of an answer that is not JSON (a gateway's HTML page, say), for people."""
    extra: tuple[tuple[str, str], ...] = ()
    """Members of the endpoint's JSON error beyond RFC 6749's (Azure's `trace_id`, …)."""

    def __post_init__(self) -> None:
        super().__init__(str(self))  # what a traceback prints: the whole message

    @property
    def permanent(self) -> bool:
        """A failure that retrying soon will not fix: bad credentials, scope or configuration.

        Timeouts, unreachable endpoints, 5xx, 408/425/429 and unreadable 200s
        are transient.
        """
        if self.error in PERMANENT_ERRORS:
            return True
        status = self.status
        return status is not None and 300 <= status < 500 and status not in TRANSIENT_STATUSES

    def __str__(self) -> str:
        parts = [self.message]
        if self.error:
            parts.append(f"error={self.error!r}")
        if self.error_description:
            parts.append(f"error_description={self.error_description!r}")
        if self.error_uri:
            parts.append(f"error_uri={self.error_uri!r}")
        parts.extend(f"{name}={value!r}" for name, value in self.extra)
        if self.body_excerpt:
            parts.append(f"body={self.body_excerpt!r}")
        return ", ".join(parts)

    def as_dict(self) -> dict[str, str | int]:
        """The error as JSON-ready fields, omitting what the endpoint did not send."""
        fields: dict[str, str | int | None] = {
            "message": self.message,
            "token_endpoint_status": self.status,
            "token_endpoint_error": self.error,
            "token_endpoint_error_description": self.error_description,
            "token_endpoint_error_uri": self.error_uri,
        }
        return {k: v for k, v in fields.items() if v is not None}
