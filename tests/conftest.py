"""Fixtures for end-to-end tests: real servers on loopback and a real mitmdump."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.certs import ServerCert, make_server_cert
from tests.support.proxy import ADDON, Mitmdump, Mitmweb
from tests.support.redis import REDIS_SERVER, RedisServer
from tests.support.servers import DripServer, RecordingServer, TokenIssuer, echo

CLIENT_SECRET = "sentinel-client-secret-7f3a"
"""Every end-to-end rule uses this secret; no output may ever contain it."""


@pytest.fixture(scope="session")
def server_cert(tmp_path_factory: pytest.TempPathFactory) -> ServerCert:
    return make_server_cert(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def issuer() -> TokenIssuer:
    return TokenIssuer(prefix="sentinel-token")


@pytest.fixture
def idp(issuer: TokenIssuer) -> Iterator[RecordingServer]:
    with RecordingServer(issuer) as server:
        yield server


@pytest.fixture
def api() -> Iterator[RecordingServer]:
    with RecordingServer(echo) as server:
        yield server


@pytest.fixture
def api_tls(server_cert: ServerCert) -> Iterator[RecordingServer]:
    with RecordingServer(echo, tls=server_cert) as server:
        yield server


StartProxy = Callable[..., Mitmdump]


@pytest.fixture
def start_proxy(
    tmp_path: Path, server_cert: ServerCert, issuer: TokenIssuer
) -> Iterator[StartProxy]:
    """Start mitmdump with the given rules (YAML text); afterwards, check it leaked nothing."""
    proxies: list[Mitmdump] = []

    def start(
        rules: str,
        *,
        options: dict[str, str] | None = None,
        env=None,
        web: bool = False,
        web_port: int | None = None,
        script: Path = ADDON,
        more_scripts: tuple[Path, ...] = (),
    ) -> Mitmdump:
        rules_file = tmp_path / f"rules-{len(proxies)}.yaml"
        rules_file.write_text(textwrap.dedent(rules))
        where = {
            "options": options,
            "env": env,
            "upstream_ca": server_cert.ca_file,
            "script": script,
            "more_scripts": more_scripts,
        }
        if web:
            proxy: Mitmdump = Mitmweb(rules_file, tmp_path / "confdir", web_port=web_port, **where)
        else:
            proxy = Mitmdump(rules_file, tmp_path / "confdir", **where)
        proxies.append(proxy)
        return proxy.start()

    yield start
    for proxy in proxies:
        proxy.stop()
        assert CLIENT_SECRET not in proxy.output
        for token in issuer.issued:
            assert token not in proxy.output


def rule(
    name: str, upstream: RecordingServer, idp: RecordingServer | DripServer, **extra: object
) -> str:
    """One rule (YAML) for `upstream`, fetching tokens from `idp` with the sentinel secret.

    `extra` adds or replaces fields; None removes one (but `accept: null` is kept).
    """
    body: dict[str, object] = {
        "name": name,
        "match": {"host": upstream.host, "port": upstream.port, "scheme": upstream.scheme},
        "token_url": f"{idp.origin}/token",
        "client_id": f"client-{name}",
        "client_secret": CLIENT_SECRET,
    }
    body.update(extra)
    body = {k: v for k, v in body.items() if v is not None or k == "accept"}
    return "  - " + json.dumps(body) + "\n"


def rules(*items: str) -> str:
    return "rules:\n" + "".join(items)


def client(proxy: Mitmdump) -> httpx.Client:
    """An httpx client that goes through the proxy and trusts its CA."""
    return httpx.Client(proxy=proxy.url, verify=trusting(proxy), trust_env=False, timeout=30)


def async_client(proxy: Mitmdump, **kw: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        proxy=proxy.url, verify=trusting(proxy), trust_env=False, timeout=30, **kw
    )


def trusting(proxy: Mitmdump) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=proxy.ca_file)


def curl(proxy: Mitmdump, url: str, *args: str) -> tuple[int, str]:
    """curl through the proxy, as an app with HTTP(S)_PROXY set would: (status, body)."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "30",
            "--cacert",
            str(proxy.ca_file),
            "-w",
            "\n%{http_code}",
            url,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "http_proxy": proxy.url, "https_proxy": proxy.url},
    )
    assert result.returncode == 0, result.stderr
    body, _, status = result.stdout.rpartition("\n")
    return int(status), body


SLOW_FILES = ("test_e2e_", "test_cli", "test_interop")
"""Tests that start processes: mitmdump, mitmweb, the command line, the authorization server."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark what starts processes `slow`: `-m "not slow"` is the in-process set, in seconds."""
    for item in items:
        starts = {"start_proxy", "redis_server"} & set(item.fixturenames)
        if item.path.name.startswith(SLOW_FILES) or starts:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server per test module, emptied before each test that asks for `fresh_redis`."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/test installs it)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def fresh_redis(redis_server: RedisServer) -> RedisServer:
    with redis_server.client() as client:
        client.flushall()
    return redis_server
