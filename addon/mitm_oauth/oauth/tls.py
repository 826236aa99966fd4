"""TLS towards the token endpoint: whom to trust, and which client certificate to show.

A client certificate authenticates the client by itself (RFC 8705
`tls_client_auth`, `self_signed_tls_client_auth`) or alongside any other
auth style. The files are read when a connection pool is made and again
whenever they change, so a renewed certificate is picked up without a restart.
"""

from __future__ import annotations

import ssl

import certifi

from ..file_version import FileVersion, file_version
from ..model import ClientCertificate


class CertificateError(ValueError):
    """A client certificate or key file that cannot be used; `path` is the culprit."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


def certificate_version(
    certificate: ClientCertificate,
) -> tuple[FileVersion | None, FileVersion | None]:
    """Changes when either file is replaced: the moment to build a new pool."""
    return file_version(certificate.cert_file), file_version(certificate.key_file)


def tls_context(ca_file: str | None, certificate: ClientCertificate | None) -> ssl.SSLContext:
    """A verifying client context that trusts `ca_file`, or else certifi's bundle (as httpx).

    Raises ValueError naming a file that is unusable (CertificateError for
    the certificate and key).
    """
    try:
        context = ssl.create_default_context(cafile=ca_file or certifi.where())
    except (OSError, ssl.SSLError) as e:
        raise ValueError(
            f"{ca_file} is not a readable PEM CA bundle ({type(e).__name__})"
        ) from None
    if certificate is not None:
        _load_certificate(context, certificate)
    return context


def _load_certificate(context: ssl.SSLContext, certificate: ClientCertificate) -> None:
    for path in (certificate.cert_file, certificate.key_file):
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise CertificateError(f"cannot read {path} ({type(e).__name__})", path) from None
    encrypted = False

    def no_password() -> str:  # asked for by an encrypted key: refuse instead of prompting
        nonlocal encrypted
        encrypted = True
        return ""

    try:
        context.load_cert_chain(certificate.cert_file, certificate.key_file, password=no_password)
    except ssl.SSLError:
        if encrypted:
            message = f"{certificate.key_file} is encrypted; give an unencrypted PEM key"
            raise CertificateError(message, certificate.key_file) from None
        message = (
            f"{certificate.cert_file} is not a PEM certificate, or {certificate.key_file} "
            "is not its PEM private key"
        )
        raise CertificateError(message, certificate.cert_file) from None
