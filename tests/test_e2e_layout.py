"""The addon's folder is on every script's `sys.path`: nothing in it may shadow another module."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from tests.support.proxy import ROOT

GENERIC_NAMES = (
    "access",
    "allowed_clients",
    "annotations",
    "assertion",
    "backoff",
    "cli",
    "client_tls",
    "config",
    "errors",
    "events",
    "exchange",
    "explain",
    "file_version",
    "final_check",
    "hosts",
    "injection",
    "krakend",
    "matching",
    "mitm",
    "model",
    "oauth",
    "observe",
    "redaction",
    "refusals",
    "replay",
    "request",
    "response",
    "rules",
    "schema",
    "secret",
    "self_access",
    "status",
    "token",
    "token_cache",
    "token_client",
    "token_request",
    "addon",
)
"""Every module name the project has used, and the names of its package's parts."""

PROBE = """
import importlib.util, json, logging, sys
from pathlib import Path

def origin(name):
    spec = importlib.util.find_spec(name)
    return None if spec is None else str(spec.origin or list(spec.submodule_search_locations))

logging.warning("probe: " + json.dumps({name: origin(name) for name in sys.argv_names}))
"""


def test_a_second_script_finds_no_generic_name_in_the_project(start_proxy, tmp_path):
    probe = tmp_path / "probe.py"
    names = [*GENERIC_NAMES, "mitm_oauth"]
    probe.write_text(PROBE.replace("sys.argv_names", repr(names)))
    proxy = start_proxy(
        "rules:\n  - {name: api, match: {host: api.example.com}, "
        "token_url: 'https://idp.example.com/token', client_id: c, client_secret: s}\n",
        more_scripts=(probe,),
    )
    line = proxy.wait_for_line(re.compile(r"probe: \{"))
    assert line is not None, proxy.output
    origins: dict[str, str | None] = json.loads(line.split("probe: ", 1)[1])
    # The control: the probe sees the addon's folder, where the product's package is found.
    assert origins.pop("mitm_oauth") == str(ROOT / "addon" / "mitm_oauth" / "__init__.py")
    inside = {n: o for n, o in origins.items() if o is not None and str(ROOT) in o}
    assert inside == {}
    made_by_tools = ("__pycache__", ".egg-info")  # by Python and by pip install -e
    found = (
        p.name
        for p in (ROOT / "addon").iterdir()
        if not p.name.endswith(made_by_tools) and not p.name.startswith(".")  # tools' caches
    )
    assert sorted(found) == [
        "client_credentials.py",
        "mitm_oauth",
    ]


def test_only_the_product_package_is_installed(tmp_path):
    """Away from the checkout, `addon` is no package at all, and the CLI is the product's."""
    found = subprocess.run(
        [sys.executable, "-c", FIND_SPECS], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == {
        "addon": None,
        "mitm_oauth": str(ROOT / "addon" / "mitm_oauth" / "__init__.py"),
        "mitm-oauth": "mitm_oauth.cli:main",
    }


FIND_SPECS = """
import importlib.metadata, importlib.util, json
spec = importlib.util.find_spec
print(json.dumps({
    "addon": spec("addon") and spec("addon").origin,
    "mitm_oauth": spec("mitm_oauth").origin,
    "mitm-oauth": importlib.metadata.entry_points(group="console_scripts")["mitm-oauth"].value,
}))
"""
