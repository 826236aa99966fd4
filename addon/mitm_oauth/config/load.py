"""The rules file: which requests get a token, and from where.

`load_rules` turns `rules.yaml` (or JSON) into validated, immutable `model.Rule`
objects or raises `RulesError` naming the file, the rule and the field. Field
names follow KrakenD's `auth/client-credentials` block so a KrakenD config
moves over as is.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..errors import RulesError
from ..model import Credentials, Rule
from . import files
from .environment import unset_names
from .speedups import collector_paused, parse, share_credentials, taken
from .validate import RuleReader, UnsetVariableError, key_label, rule_label, unknown_key

_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")
_GRAMMAR = re.compile(r"<[a-z ]+>|.{1,2}")
"""What PyYAML quotes that cannot be a secret: a token's name, a character or two."""


def load_rules(
    path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
) -> list[Rule]:
    """Read and validate a rules file; `${VAR}` references resolve from `environ`."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RulesError("file not found", file=file) from None
    except (OSError, UnicodeDecodeError) as e:
        raise RulesError(f"cannot read the file ({type(e).__name__})", file=file) from None
    return parse_rules(text, file=file, environ=os.environ if environ is None else environ)


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A rules file as parsed, before validation; empty when it is not a mapping."""
    document = parse(Path(path).read_text(encoding="utf-8"))
    return document if isinstance(document, dict) else {}


def parse_rules(
    text: str, *, file: str, environ: Mapping[str, str], base: Path | None = None
) -> list[Rule]:
    """Validate the text of a rules file. Disabled rules are checked, then left out.

    Relative file paths in rules are relative to `base`, by default the rules
    file's folder, so that a rules file works from any working directory.
    """
    base = Path(file).parent if base is None else base
    with collector_paused():
        try:
            return _parse_rules(text, file=file, environ=environ, base=base)
        except RulesError:
            raise
        except RecursionError:
            raise RulesError("nested too deeply to be a rules file", file=file) from None
        except Exception as e:  # an input nobody foresaw: still one line, never a traceback
            raise RulesError(f"cannot be read ({type(e).__name__})", file=file) from None


def _parse_rules(text: str, *, file: str, environ: Mapping[str, str], base: Path) -> list[Rule]:
    try:
        document = parse(text)
    except yaml.YAMLError as e:
        # Only the position: the YAML library's own message quotes the line,
        # which may hold a secret.
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise RulesError(f"not valid YAML{where}: {_yaml_problem(e)}", file=file) from None
    if not isinstance(document, dict):
        raise RulesError("must be a mapping with a 'rules' list", file=file)
    for key in document:
        if key != "rules" and not str(key).startswith("x-"):
            raise RulesError(unknown_key(key, ("rules",)), file=file)
    items = document.get("rules")
    if not isinstance(items, list):
        raise RulesError("'rules' must be a list of rules", file=file, field="rules")

    rules: list[Rule] = []
    seen: set[str] = set()
    shared: dict[Credentials, Credentials] = {}
    for position, item in enumerate(taken(items)):
        reader = RuleReader(item, file=file, position=position, environ=environ, base=base)
        try:
            rule, disabled = reader.safely_read()
        except UnsetVariableError:
            _name_every_unset_variable([item, *reversed(items)], position, file, environ)
            raise
        if rule.name in seen:
            raise reader.error("name", f"duplicate rule name '{rule.name}'")
        seen.add(rule.name)
        if disabled:
            continue  # checked, but its files may not exist yet
        files.check(rule.credentials, reader.error)
        rules.append(share_credentials(rule, shared))
    return rules


def _name_every_unset_variable(
    items: list[Any], first: int, file: str, environ: Mapping[str, str]
) -> None:
    """Once a rule refers to an unset variable: name every unset variable of the rules from
    there on at once, not one per attempt, when there are several (one is left to the
    reader's message). `items` are those rules, the first at position `first`."""
    missing = [
        (name, f"rule {rule_label(item, position)} field '{field}'")
        for position, item in enumerate(items, start=first)
        for field, value in _strings(item, "")
        for name in unset_names(value, environ)
    ]
    names = list(dict.fromkeys(name for name, _ in missing))
    if len(names) > 1:
        where = "; ".join(f"{name} in {place}" for name, place in missing)
        raise RulesError(
            f"environment variables {', '.join(names)} are unset or empty ({where})", file=file
        )


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    """Every string in a parsed rule, with the dotted path of the field it is in."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key_label(key)}" if path else key_label(key))
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item, path)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's description of a problem, without what it quotes from the file.

    It quotes tags and characters (`could not determine a constructor for the
    tag '!s3cret'`): a secret written in the file can start with `!`.
    """

    def keep_grammar(quoted: re.Match[str]) -> str:
        inner = quoted.group(1) if quoted.group(1) is not None else quoted.group(2)
        return quoted.group(0) if _GRAMMAR.fullmatch(inner) else ""

    problem = _QUOTED.sub(keep_grammar, getattr(error, "problem", None) or "syntax error")
    problem = " ".join(problem.split())
    if "tag" in problem:
        problem += " (a value that starts with '!' must be quoted)"
    elif "alias" in problem or "anchor" in problem:
        problem += " (a value that starts with '*' or '&' must be quoted)"
    return problem
