"""Throwaway keys and certificates for the test servers and clients on loopback."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class ServerCert:
    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True)
class ClientCert:
    cert_file: Path
    key_file: Path
    subject: str
    """The certificate's subject as an RFC 4514 string, e.g. "CN=client-a"."""


def new_key(kind: str = "ec") -> PrivateKey:
    """ "ec" (P-256), "ec384", "ec521", "rsa" (2048 bits) or "rsa1024" (too small)."""
    curves = {"ec": ec.SECP256R1, "ec384": ec.SECP384R1, "ec521": ec.SECP521R1}
    if kind in curves:
        return ec.generate_private_key(curves[kind]())
    return rsa.generate_private_key(65537, 1024 if kind == "rsa1024" else 2048)


def write_key(path: Path, key: PrivateKey, password: bytes | None = None) -> Path:
    encryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    )
    return path


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


class CertificateAuthority:
    """A CA that lives for one test run."""

    def __init__(self, name: str = "test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        usage = x509.KeyUsage(
            digital_signature=True,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=True,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        self.cert = (
            _builder(self.name, self.name, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage, critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def write(self, path: Path) -> Path:
        path.write_bytes(_pem(self.cert))
        return path

    def issue(
        self, subject: x509.Name, key: PrivateKey, extensions: list[x509.ExtensionType]
    ) -> x509.Certificate:
        builder = _builder(subject, self.name, key.public_key())
        for extension in extensions:
            builder = builder.add_extension(extension, critical=False)
        return builder.sign(self.key, hashes.SHA256())


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def make_server_cert(
    directory: Path,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "alt.localhost"),
    ca: CertificateAuthority | None = None,
) -> ServerCert:
    ca = ca or CertificateAuthority()
    key = new_key()
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    cert = ca.issue(
        subject,
        key,
        [
            x509.SubjectAlternativeName(names),
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        ],
    )
    result = ServerCert(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.write(result.ca_file)
    result.cert_file.write_bytes(_pem(cert))
    write_key(result.key_file, key)
    return result


def make_client_cert(
    directory: Path, name: str, ca: CertificateAuthority | None = None, key_kind: str = "ec"
) -> ClientCert:
    """A client certificate for `CN=name`, issued by `ca` or, without one, self-signed."""
    key = new_key(key_kind)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    usage = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    if ca is not None:
        cert = ca.issue(subject, key, [usage])
    else:
        signer: CertificateIssuerPrivateKeyTypes = key
        cert = (
            _builder(subject, subject, key.public_key())
            .add_extension(usage, critical=False)
            .sign(signer, hashes.SHA256())
        )
    result = ClientCert(
        directory / f"{name}.pem", directory / f"{name}.key", subject.rfc4514_string()
    )
    result.cert_file.write_bytes(_pem(cert))
    write_key(result.key_file, key)
    return result
