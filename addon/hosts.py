"""Host names as rules and requests spell them: one canonical form for both."""

from __future__ import annotations

import functools
import ipaddress
import re

from publicsuffix2 import PublicSuffixList

_HOST_NAME = re.compile(
    r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*"
)


@functools.lru_cache(maxsize=4096)
def normalise_host(host: str) -> str:
    """Lower-case ASCII host: IDNA for Unicode names, no trailing dot, IPs in standard form.

    Raises ValueError for anything that is not a host name or IP address,
    including numeric names that resolvers read as IPs in odd notations
    (`127.1`, `0x7f.0.0.1`, `2130706433`): those could reach one address
    under two spellings.
    """
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host.endswith("."):
        host = host[:-1]
    if ":" in host or host.replace(".", "").isdigit():  # only these can be IP addresses
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("not a valid host name") from None
    if not _HOST_NAME.fullmatch(host):
        raise ValueError("not a valid host name")
    last_label = host.rsplit(".", 1)[-1]
    if last_label.isdigit() or re.fullmatch(r"0x[0-9a-f]*", last_label):
        raise ValueError("a numeric name that is not an IP address in standard form")
    return host


def is_ip_address(host: str) -> bool:
    if ":" not in host and not host.replace(".", "").isdigit():  # as in normalise_host
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost: traffic that never leaves the machine."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def is_public_suffix(domain: str) -> bool:
    """True for `com`, `co.uk`, `github.io`: names under which anyone can register a site."""
    return _public_suffixes().get_tld(domain, strict=True) == domain
