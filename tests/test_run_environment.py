"""The environment `mitm-oauth run` gives a command, built alone (no process started)."""

from __future__ import annotations

from pathlib import Path

from mitm_oauth.run.command import _store_secret_names
from mitm_oauth.run.environment import (
    CA_VARIABLES,
    NODE_PRELOAD,
    TrustFiles,
    child_environment,
    trust_files,
)


def files(tmp_path: Path) -> TrustFiles:
    return TrustFiles(tmp_path / "bundle.pem", tmp_path / "wgetrc", tmp_path / "store")


def test_every_runtime_is_pointed_at_the_proxy_and_the_bundle(tmp_path):
    env = child_environment({"PATH": "/bin"}, 8123, files(tmp_path), secrets=set())
    for name in ("HTTP_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        assert env[name] == "http://127.0.0.1:8123"
    assert env["NO_PROXY"] == env["no_proxy"] == ""
    assert {env[name] for name in CA_VARIABLES} == {str(tmp_path / "bundle.pem")}
    assert env["WGETRC"] == str(tmp_path / "wgetrc")
    assert env["NODE_USE_ENV_PROXY"] == "1"
    assert env["NODE_OPTIONS"] == f'--require "{NODE_PRELOAD}"'
    java = env["JAVA_TOOL_OPTIONS"].split()
    assert "-Dhttps.proxyPort=8123" in java
    assert "-Dhttp.nonProxyHosts=" in java
    assert f"-Djavax.net.ssl.trustStore={tmp_path / 'store'}" in java
    assert env["PATH"] == "/bin"


def test_the_users_own_options_are_kept_and_ours_come_last(tmp_path):
    given = {"NODE_OPTIONS": "--max-old-space-size=512", "JAVA_TOOL_OPTIONS": "-Xmx1g"}
    env = child_environment(given, 8123, files(tmp_path), secrets=set())
    assert env["NODE_OPTIONS"].startswith("--max-old-space-size=512 --require ")
    assert env["JAVA_TOOL_OPTIONS"].startswith("-Xmx1g -Dhttp.proxyHost=127.0.0.1 ")


def test_the_secret_variables_are_left_out(tmp_path):
    given = {"API_SECRET": "s3cret", "KEEP": "1"}
    env = child_environment(given, 8123, files(tmp_path), secrets={"API_SECRET"})
    assert "API_SECRET" not in env
    assert env["KEEP"] == "1"


def test_the_bundle_keeps_the_systems_cas_and_wget_keeps_its_own_settings(tmp_path):
    ca = tmp_path / "proxy-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nproxy\n-----END CERTIFICATE-----\n")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".wgetrc").write_text("tries = 3\n")
    folder = tmp_path / "run"
    folder.mkdir()
    made = trust_files(ca, folder, {"HOME": str(tmp_path / "home"), "PATH": ""})
    bundle = made.bundle.read_text()
    assert bundle.endswith(ca.read_text())
    assert bundle.count("BEGIN CERTIFICATE") > 10  # the system's (or certifi's) CAs come first
    assert made.wgetrc.read_text() == f"tries = 3\n\nca_certificate = {made.bundle}\n"
    assert made.wgetrc.stat().st_mode & 0o077 == 0


def test_the_readme_names_every_variable_run_sets(tmp_path):
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme[readme.index("### Routing an app") : readme.index("### In CI")]
    env = child_environment({}, 8123, files(tmp_path), secrets=set())
    unnamed = [name for name in env if name.isupper() and f"`{name}" not in section]
    assert unnamed == []


def test_the_variables_that_open_the_token_store_are_left_out(tmp_path):
    names = _store_secret_names(["confdir=/x", "oauth_store=redis://:${REDIS_PW}@cache:6379"])
    assert names == {"OAUTH_STORE_KEY", "OAUTH_STORE_PASSWORD", "REDIS_PW"}
