"""Host names as rules and requests spell them: one canonical form for both.

Three readings, because three parties read a host name:
- `normalise_host`: what the operator wrote in a rule. Unicode labels become
  IDNA 2008 A-labels (`bücher` → `xn--bcher-kva`), strictly: no character is
  folded away.
- `wire_host`: what a request says in its Host header, `:authority` or SNI.
  A server compares these as bytes, so they must be ASCII already: a
  zero-width space or a full-width letter is a different name, not a spelling.
- `connect_host`: mitmproxy's destination, as the resolver will be asked for
  it (Python's sockets encode Unicode names with IDNA 2003).
All three lower-case, drop a trailing dot and write IP addresses in standard form.
"""

from __future__ import annotations

import functools
import ipaddress
import re

import idna
from publicsuffix2 import PublicSuffixList

_HOST_NAME = re.compile(
    r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*"
)
_HEX_LABEL = re.compile(r"0x[0-9a-f]*")


@functools.lru_cache(maxsize=4096)
def normalise_host(host: str) -> str:
    """A rule's host: lower-case ASCII, Unicode labels as strict IDNA 2008 A-labels.

    Raises ValueError for anything that is not a host name or IP address,
    including numeric names that resolvers read as IPs in odd notations
    (`127.1`, `0x7f.0.0.1`, `2130706433`): those could reach one address
    under two spellings.
    """
    host = _bare(host.strip())
    if host.isascii():
        return _checked(host.lower())
    labels = []
    for label in host.split("."):
        if label.isascii():
            labels.append(label.lower())
            continue
        try:
            labels.append(idna.alabel(label.lower()).decode("ascii"))
        except (idna.IDNAError, UnicodeError):
            raise ValueError("not a valid international host name (IDNA 2008)") from None
    return _checked(".".join(labels))


@functools.lru_cache(maxsize=4096)
def wire_host(name: str) -> str:
    """A host as a request names it (Host header, `:authority`, SNI); ASCII only.

    Raises ValueError for a name that is not ASCII: servers compare names as
    bytes, so `local\\u200bhost` or full-width letters are another host, never
    a spelling of one.
    """
    if not name.isascii():  # before lower(): "\u212a".lower() is an ASCII "k"
        raise ValueError("not ASCII")
    return _checked(_bare(name).lower())


@functools.lru_cache(maxsize=4096)
def connect_host(host: str) -> str:
    """The host mitmproxy resolves for a destination, in the form rules use.

    mitmproxy decodes `xn--` labels of a request line into Unicode; the
    socket layer encodes them again with IDNA 2003 before asking the resolver.
    """
    host = _bare(host)
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError("not a host name the resolver can be asked for") from None
    return _checked(host.lower())


def _bare(host: str) -> str:
    """Without IPv6 brackets and the trailing dot of a fully qualified name."""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host[:-1] if host.endswith(".") else host


def _checked(host: str) -> str:
    """`host` (lower-case ASCII) as a valid name, or an IP address in standard form."""
    if ":" in host or host.replace(".", "").isdigit():  # only these can be IP addresses
        try:
            return str(ipaddress.ip_address(host))
        except ValueError:
            pass
    if not _HOST_NAME.fullmatch(host):
        raise ValueError("not a valid host name")
    last_label = host.rsplit(".", 1)[-1]
    if last_label.isdigit() or _HEX_LABEL.fullmatch(last_label):
        raise ValueError("a numeric name that is not an IP address in standard form")
    return host


def default_port(scheme: str) -> int:
    """The port a URL without one names: 443 for https, 80 otherwise (http)."""
    return 443 if scheme == "https" else 80


def is_ip_address(host: str) -> bool:
    if ":" not in host and not host.replace(".", "").isdigit():  # as in _checked
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
