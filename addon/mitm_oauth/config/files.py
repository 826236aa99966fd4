"""The files a rule names, checked once its fields are valid: secrets, keys, certificates.

A step of its own so that reading a rule stays pure. Disabled rules are not
checked: they may name files that do not exist yet. Every file is read again
at use, so these checks catch mistakes early; they do not pin the contents.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import RulesError
from ..model import AuthStyle, Credentials
from ..oauth import assertion, dpop
from ..oauth.tls import CertificateError, tls_context
from ..secret import SecretFile

Locate = Callable[[str, str], RulesError]
"""Makes the error for a field of the rule being checked: (field, message)."""


def check(creds: Credentials, error: Locate) -> None:
    """Raise the first problem with a file that `creds` names, located by `error`."""
    for field, value in (
        ("client_id_file", creds.client_id),
        ("client_secret_file", creds.client_secret),
    ):
        if isinstance(value, SecretFile):
            try:
                value.reveal()
            except ValueError as e:
                raise error(field, str(e)) from None
    if creds.ca_file is not None:
        try:
            tls_context(creds.ca_file, None)
        except ValueError as e:
            raise error("ca_file", str(e)) from None
    settings = creds.assertion
    if settings is not None and settings.private_key_file is not None:
        try:
            assertion.load_signing_key(settings.private_key_file, settings.algorithm)
        except ValueError as e:
            raise error("private_key_file", str(e)) from None
    secret = creds.client_secret
    if creds.auth_style is AuthStyle.CLIENT_SECRET_JWT and isinstance(secret, SecretFile):
        assert settings is not None  # client_secret_jwt always has its settings
        try:
            assertion.check_secret_length(settings.algorithm, secret.reveal())
        except ValueError as e:
            raise error("client_secret", str(e)) from None
    if creds.dpop is not None and creds.dpop.key_file is not None:
        try:
            dpop.load_key(creds.dpop.key_file, creds.dpop.algorithm)
        except ValueError as e:
            raise error("dpop_key_file", str(e)) from None
    certificate = creds.client_certificate
    if certificate is not None:
        try:
            tls_context(None, certificate)
        except CertificateError as e:
            name = "client_key_file" if e.path == certificate.key_file else "client_cert_file"
            raise error(name, str(e)) from None
