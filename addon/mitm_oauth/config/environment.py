"""`${VAR}` and `${VAR:-default}` in rule values, from the environment.

Secrets stay out of the rules file: `client_secret: ${BILLING_SECRET}`. `$${`
stands for a literal `${`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class UnsetVariable(ValueError):
    """A reference to a variable that is not set (or empty) and has no default."""

    def __init__(self, name: str, *, empty: bool) -> None:
        super().__init__(f"environment variable {name} is {'empty' if empty else 'not set'}")


def expand(value: str, environ: Mapping[str, str]) -> str:
    """`value` with its references replaced; an empty variable counts as unset."""
    if "$" not in value:
        return value

    def replacement(m: re.Match[str]) -> str:
        if m.group(0) == "$${":
            return "${"
        name, default = m.group(1), m.group(2)
        found = environ.get(name)
        if found:
            return found
        if default is not None:
            return default
        raise UnsetVariable(name, empty=found is not None)

    return _REFERENCE.sub(replacement, value)


def unset_names(value: str, environ: Mapping[str, str]) -> Iterator[str]:
    """The variables `value` refers to that `expand` would find unset or empty."""
    if "$" not in value:
        return
    for m in _REFERENCE.finditer(value):
        name, default = m.group(1), m.group(2)
        if name is not None and default is None and not environ.get(name):
            yield name


def references(value: object) -> set[str]:
    """The names of the variables `value` (a string, or lists and mappings of them) refers to."""
    if isinstance(value, str):
        return {m.group(1) for m in _REFERENCE.finditer(value) if m.group(1)}
    if isinstance(value, dict):
        return set().union(*(references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(references(v) for v in value))
    return set()
