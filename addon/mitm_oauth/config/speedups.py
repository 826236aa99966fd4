"""What makes large rules files load fast and reload without stalling traffic.

Each trick here is an optimisation only: the equivalence tests in
tests/test_rules.py check that results are the same as without it, and
docs/performance.md has the measurements behind each.

- `parse`: JSON through the JSON parser, and plain YAML built directly from
  libyaml's nodes rather than through PyYAML's generic constructor.
- `collector_paused`: no cyclic garbage collection while a file is read, and
  what was made meanwhile moved out of the young generations at once.
- `drop_gradually`, `taken`: a parsed document freed a rule at a time, so a
  reload's thread hands the GIL back to the event loop in between (a retired
  `RuleIndex` is taken apart the same way, by its `dismantle`).
- `shared`, `share_credentials`, `keep_unchanged`: one object for equal values,
  so fewer objects live for the collector to scan and the token cache finds
  credential sets by identity.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

import yaml

from ..model import Credentials, Rule

T = TypeVar("T")

_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's safe loader where PyYAML has it."""
_STR, _MAP, _SEQ = (f"tag:yaml.org,2002:{kind}" for kind in ("str", "map", "seq"))


def parse(text: str) -> Any:
    """What `yaml.safe_load(text)` returns, made faster."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style looks alike; the YAML parser decides
    loader = _SafeLoader(text)
    node = None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        try:
            return _construct(node, loader, set())
        except _NotPlain:
            return loader.construct_document(node)
    finally:
        loader.dispose()
        drop_gradually(node)


class _NotPlain(Exception):
    """The document holds more than scalars in lists and string-keyed mappings."""


def _construct(node: yaml.Node, loader: Any, seen: set[int]) -> Any:
    """What PyYAML's safe constructor makes of a plain document, built directly.

    Rules files are scalars in lists and string-keyed mappings. Scalars other
    than strings are PyYAML's to build. Anything else (aliases, merge keys,
    other keys, tagged collections) raises `_NotPlain`, and PyYAML builds the
    whole document, as it always did.
    """
    kind, tag = type(node), node.tag
    if kind is yaml.ScalarNode:
        return node.value if tag == _STR else loader.construct_object(node)
    if id(node) in seen:  # an alias: PyYAML builds what it refers to once
        raise _NotPlain
    seen.add(id(node))
    if kind is yaml.SequenceNode and tag == _SEQ:
        return [_construct(item, loader, seen) for item in node.value]
    if kind is yaml.MappingNode and tag == _MAP and _string_keys(node):
        return {key.value: _construct(value, loader, seen) for key, value in node.value}
    raise _NotPlain


def _string_keys(node: yaml.Node) -> bool:
    return all(type(key) is yaml.ScalarNode and key.tag == _STR for key, _ in node.value)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a rules file is read.

    Reading builds a dozen container objects per rule; without the pause the
    collector scans the whole heap (mitmproxy's included) again and again, and
    each scan holds the GIL, stalling traffic while a reload reads in its
    thread. Reference counting still frees what is not cyclic.

    Afterwards, what was made meanwhile goes straight to the oldest generation
    (freeze, then unfreeze) instead of being scanned young, generation after
    generation, on the event loop. Skipped when something else has frozen
    objects, which unfreezing would release (Python 3.12 itself freezes some).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if gc.get_freeze_count() == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def drop_gradually(document: yaml.Node | None) -> None:
    """Free a parsed YAML document a rule at a time rather than all at once.

    Freeing a whole tree is one call that holds the GIL throughout; rule by
    rule, the interpreter can hand the GIL to the event loop in between.
    """
    for section in _take_children(document):  # "rules", the x- keys, and their values
        for _item in _take_children(section):  # a rule, say: freed when the next is taken
            pass


def taken(items: list[Any]) -> Iterator[Any]:
    """A list's items, each taken out as it comes, so that each is freed once used."""
    items.reverse()
    while items:
        yield items.pop()


def _take_children(node: yaml.Node | None) -> Iterator[yaml.Node]:
    """Take a node's children out of it, one by one."""
    value = getattr(node, "value", None)
    if isinstance(value, list):  # a mapping's children come in (key, value) pairs
        for item in taken(value):
            yield from item if isinstance(item, tuple) else (item,)


@functools.lru_cache(maxsize=1024)
def shared(values: frozenset[T]) -> frozenset[T]:
    """One object for equal sets of schemes, methods or statuses: thousands of rules
    repeat a handful of them, and every object a rule keeps is one more to scan."""
    return values


def share_credentials(rule: Rule, shared: dict[Credentials, Credentials]) -> Rule:
    """`rule` with the credential set in `shared` that equals its own, if any (else its own
    joins `shared`). Rules with equal credentials share one object: the token cache, probed
    on every request, then finds it by identity instead of comparing every field."""
    creds = shared.setdefault(rule.credentials, rule.credentials)
    return rule if creds is rule.credentials else replace(rule, credentials=creds)


def keep_unchanged(rules: Iterable[Rule], previous: Iterable[Rule]) -> list[Rule]:
    """`rules`, where a rule equal to one of `previous` is that object, and so is a credential set.

    A reload usually changes a rule or two. The others keep their objects, so
    the token cache still finds their credential sets by identity, and the
    swap on the event loop has little to free.
    """
    kept = {rule: rule for rule in previous}
    credentials = {rule.credentials: rule.credentials for rule in kept}
    return [kept.get(rule) or share_credentials(rule, credentials) for rule in rules]
