"""Helpers for the state-history viewer: what changed between two snapshots, and the graph drawing.

Pure functions over serialized states (plain JSON-able dicts, as `load_serialized` returns them),
so the History page only renders what these compute and the logic is unit-tested without a UI.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import graphviz
from burr.core import State

from core.app import ENTRYPOINT, build_graph

INTERNAL_PREFIX = "__"  # Burr's own bookkeeping keys (__SEQUENCE_ID, __PRIOR_STEP)
CURRENT_FILL = "#8fd3ae"
NEXT_FILL = "#f3c969"


@dataclasses.dataclass(frozen=True)
class StateDiff:
    """Keys added, changed (old, new) and removed; lists that only grew are in `appended`."""

    added: dict[str, Any]
    changed: dict[str, tuple[Any, Any]]
    removed: dict[str, Any]
    appended: dict[str, list[Any]]

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed or self.appended)


def diff_states(before: Mapping[str, Any] | None, after: Mapping[str, Any],
                include_internal: bool = False) -> StateDiff:
    """Compares two serialized states; `before=None` means the first snapshot (everything is new).

    Burr's internal keys change on every step, so they are left out unless asked for.
    """
    before = before or {}

    def keep(key: str) -> bool:
        return include_internal or not key.startswith(INTERNAL_PREFIX)

    added = {k: v for k, v in after.items() if k not in before and keep(k)}
    removed = {k: v for k, v in before.items() if k not in after and keep(k)}
    changed: dict[str, tuple[Any, Any]] = {}
    appended: dict[str, list[Any]] = {}
    for key in after.keys() & before.keys():
        old, new = before[key], after[key]
        if not keep(key) or old == new:
            continue
        tail = appended_items(old, new)
        if tail is None:
            changed[key] = (old, new)
        else:
            appended[key] = tail
    return StateDiff(added, _ordered(changed, after), removed, _ordered(appended, after))


def appended_items(old: Any, new: Any) -> list[Any] | None:
    """The items `new` adds at the end of `old`, or None when `new` is not `old` plus more items."""
    if isinstance(old, list) and isinstance(new, list) and len(new) > len(old) and new[: len(old)] == old:
        return list(new[len(old):])
    return None


def _ordered(values: dict[str, Any], reference: Mapping[str, Any]) -> dict[str, Any]:
    """Keeps the state's own key order (sets lose it), so the page lists keys predictably."""
    return {k: values[k] for k in reference if k in values}


def next_action(position: str | None, status: str, state: Mapping[str, Any]) -> str | None:
    """The action Burr runs after this snapshot: the same one again after a failure, else the graph's pick."""
    if status == "failed" and position:
        return position
    node = build_graph().get_next_node(position, State(dict(state)), ENTRYPOINT)
    return node.name if node is not None else None


def highlighted_graph(current: str | None, upcoming: str | None) -> graphviz.Digraph:
    """The chat graph with conditions on the edges, the snapshot's step filled and the next step marked."""
    dot = build_graph().visualize(include_conditions=True)
    dot.attr(bgcolor="transparent")
    if upcoming and upcoming != current:
        dot.node(upcoming, fillcolor=NEXT_FILL, penwidth="2", xlabel="next")
    if current:
        dot.node(current, fillcolor=CURRENT_FILL, penwidth="3",
                 xlabel="this step" if upcoming != current else "failed here, retried next")
    return dot
