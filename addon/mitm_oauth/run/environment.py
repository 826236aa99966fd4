"""The environment `mitm-oauth run` gives a command: every common runtime through the proxy.

Each runtime finds a proxy and trusted CAs its own way. Tools that read the
standard variables get them; the CA variables name a bundle that holds the
system's CAs as well as the proxy's, because each of them replaces the default
store rather than adding to it. Java reads neither, so it gets system
properties and a trust store of its own; Node before 22.21 reads no proxy
variable, so it gets a preload that routes it.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import certifi

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
"""Set in both cases: curl reads only `http_proxy` in lower case, others the upper case."""
CA_VARIABLES = (
    "SSL_CERT_FILE",  # OpenSSL and Go: Python, Ruby, Go, .NET on Linux, wget, git's OpenSSL
    "REQUESTS_CA_BUNDLE",  # requests
    "CURL_CA_BUNDLE",  # curl
    "GIT_SSL_CAINFO",  # git
    "PIP_CERT",  # pip
    "AWS_CA_BUNDLE",  # the AWS CLI and SDKs
    "NODE_EXTRA_CA_CERTS",  # Node adds it to its own store
    "DENO_CERT",  # Deno
    "CARGO_HTTP_CAINFO",  # cargo
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",  # gRPC's C core: Python, Ruby, C++ clients
)
"""Each names a bundle that replaces the default store: it holds the system's CAs too."""
NODE_PRELOAD = Path(__file__).with_name("node_preload.cjs")
JAVA_STORE_PASSWORD = "changeit"
"""The JDK's own, well-known password: a trust store holds public certificates only."""


@dataclass(frozen=True)
class TrustFiles:
    """The files that make each runtime trust the proxy's CA, written for one run."""

    bundle: Path
    """The system's CAs and the proxy's, in PEM: what the CA variables name."""
    wgetrc: Path
    """wget's configuration: the user's own, and the bundle (GnuTLS reads no variable)."""
    java_trust_store: Path | None
    """The JDK's trust store and the proxy's CA; None without a JDK."""


def trust_files(proxy_ca: Path, folder: Path, environ: Mapping[str, str]) -> TrustFiles:
    """Write the files each runtime needs to trust `proxy_ca` into `folder`."""
    bundle = folder / "ca-bundle.pem"
    bundle.write_bytes(_system_cas() + b"\n" + proxy_ca.read_bytes())
    wgetrc = folder / "wgetrc"
    wgetrc.write_text(_user_wgetrc(environ) + f"\nca_certificate = {bundle}\n")
    wgetrc.chmod(0o600)  # the user's own may hold a password
    return TrustFiles(bundle, wgetrc, _java_trust_store(proxy_ca, folder / "java-trust-store"))


def child_environment(
    environ: Mapping[str, str], port: int, trust: TrustFiles, *, secrets: set[str]
) -> dict[str, str]:
    """`environ` without the secrets, with the proxy and the CAs set for every runtime."""
    proxy = f"http://127.0.0.1:{port}"
    env = {name: value for name, value in environ.items() if name not in secrets}
    for name in PROXY_VARIABLES:
        env[name] = env[name.lower()] = proxy
    # Local APIs are behind rules too: nothing bypasses the proxy.
    env["NO_PROXY"] = env["no_proxy"] = ""
    env.update(dict.fromkeys(CA_VARIABLES, str(trust.bundle)))
    env["WGETRC"] = str(trust.wgetrc)
    env["NODE_USE_ENV_PROXY"] = "1"
    env["NODE_OPTIONS"] = _joined(env.get("NODE_OPTIONS"), f"--require {_quoted(NODE_PRELOAD)}")
    env["JAVA_TOOL_OPTIONS"] = _joined(
        env.get("JAVA_TOOL_OPTIONS"), java_options(port, trust.java_trust_store)
    )
    return env


def java_options(port: int, trust_store: Path | None) -> str:
    """System properties that send Java's HTTP clients through the proxy, loopback included.

    Java reads no proxy variable. `HttpURLConnection` uses these properties;
    `HttpClient` does when built with `ProxySelector.getDefault()`. The JDK
    skips the proxy for localhost and 127.* unless `nonProxyHosts` says other.
    """
    options = []
    for scheme in ("http", "https"):
        options += [f"-D{scheme}.proxyHost=127.0.0.1", f"-D{scheme}.proxyPort={port}"]
    options.append("-Dhttp.nonProxyHosts=")  # shared by both schemes
    if trust_store is not None:
        options += [
            f"-Djavax.net.ssl.trustStore={trust_store}",
            f"-Djavax.net.ssl.trustStorePassword={JAVA_STORE_PASSWORD}",
        ]
    return " ".join(options)


def _java_trust_store(proxy_ca: Path, destination: Path) -> Path | None:
    """A copy of the JDK's trust store with the proxy's CA added; None without a JDK."""
    keytool = _keytool()
    if keytool is None:
        return None
    cacerts = keytool.resolve().parent.parent / "lib" / "security" / "cacerts"
    if not cacerts.is_file():
        return None
    shutil.copyfile(cacerts, destination)
    destination.chmod(0o600)
    store = ["-keystore", str(destination), "-storepass", JAVA_STORE_PASSWORD]
    added = subprocess.run(
        [
            str(keytool),
            "-importcert",
            "-noprompt",
            "-alias",
            "mitmproxy",
            "-file",
            str(proxy_ca),
            *store,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return destination if added.returncode == 0 else None


def _keytool() -> Path | None:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "keytool").is_file():
        return Path(home) / "bin" / "keytool"
    found = shutil.which("keytool")
    return Path(found) if found else None


def _user_wgetrc(environ: Mapping[str, str]) -> str:
    """The configuration wget would read: `$WGETRC`, else `~/.wgetrc`."""
    given = environ.get("WGETRC") or str(Path(environ.get("HOME", "~")) / ".wgetrc")
    path = Path(given).expanduser()
    return path.read_text() if path.is_file() else ""


def _system_cas() -> bytes:
    """The system's trusted CAs, which the bundle must keep; certifi's where there are none."""
    cafile = ssl.get_default_verify_paths().cafile
    return Path(cafile if cafile and Path(cafile).is_file() else certifi.where()).read_bytes()


def _joined(existing: str | None, ours: str) -> str:
    """The user's own options first; ours after, so that ours win where both set one."""
    return f"{existing} {ours}" if existing else ours


def _quoted(path: Path) -> str:
    """NODE_OPTIONS reads a value in double quotes, with backslash escapes, not shell quoting."""
    escaped = str(path).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
