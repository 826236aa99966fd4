"""What the module map promises: only `mitm` knows mitmproxy, and the model is plain data."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from tests.support.proxy import ROOT

PACKAGE = ROOT / "addon" / "mitm_oauth"


def imported(path: Path) -> set[str]:
    """The top-level names `path` imports; relative imports as their dots and module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.partition(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names.add("." * node.level + module if node.level else module.partition(".")[0])
    return names


def test_only_the_mitm_package_imports_mitmproxy():
    outside = [p for p in PACKAGE.rglob("*.py") if "mitm" not in p.relative_to(PACKAGE).parts[:-1]]
    assert len(outside) > 20
    assert [p.name for p in outside if "mitmproxy" in imported(p)] == []


def test_the_model_imports_the_standard_library_and_nothing_else():
    names = imported(PACKAGE / "model.py") - {"__future__"}
    assert names - set(sys.stdlib_module_names) == {".secret"}
    assert imported(PACKAGE / "secret.py") - {"__future__"} <= set(sys.stdlib_module_names)
