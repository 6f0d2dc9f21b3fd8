"""What every import format is read into: one conversation as a stream of branches, steps and ratings.

Readers (burrow_json.py, foreign.py) turn a file into `Incoming` conversations whose `parts()` yields
`BranchStart`, then that branch's `Step`s, then the next branch...; `Rating`s come last. The same
stream is read twice: once to check the whole file (nothing written), once to write it (service.py).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from core.errors import InputError

FORMAT = "burrow.conversation"
VERSION = 1


@dataclasses.dataclass(frozen=True)
class BranchStart:
    app_id: str
    parent: str | None  # the branch it forked from (None: started empty)
    fork_sequence_id: int | None


@dataclasses.dataclass(frozen=True)
class Step:
    """One Burr snapshot of the current branch: its state as stored (serialized)."""

    sequence_id: int
    position: str
    status: str
    state: dict[str, Any]
    error: str | None = None  # why a failed step failed
    facts: dict[str, Any] | None = None  # the failed reply's facts
    plain: bool = True  # no Burr serde marker anywhere in the state (it needs no deserializing)


@dataclasses.dataclass(frozen=True)
class Rating:
    app_id: str
    sequence_id: int
    message_index: int
    thumbs_up: bool | None
    comment: str | None
    tags: tuple[str, ...]


Part = BranchStart | Step | Rating


@dataclasses.dataclass(frozen=True)
class Incoming:
    """One conversation of a file: the id and title it had, and how to read its parts (again)."""

    source_id: str | None
    title: str | None
    parts: Callable[[], Iterator[Part]]
    where: str  # "export.json" or "conversations.json: item 3", for error messages
    keeps_branch_ids: bool = False  # Burrow JSON: its branch ids are kept when its conversation id is


def fail(where: str, problem: str) -> InputError:
    """The one error a bad file gets: where in it, and what is wrong."""
    return InputError(f"{where}: {problem}")


def check_parts(incoming: Incoming) -> int:
    """Reads a conversation's parts to the end, checking that they fit together; returns its step count."""
    branches: set[str] = set()
    parents: list[tuple[str, str]] = []
    last_seq: int | None = None
    steps = 0
    for part in incoming.parts():
        if isinstance(part, BranchStart):
            if part.app_id in branches:
                raise fail(incoming.where, f"branch {part.app_id} appears twice")
            branches.add(part.app_id)
            if part.parent is not None:
                parents.append((part.app_id, part.parent))
            last_seq = None
        elif isinstance(part, Step):
            if not branches:
                raise fail(incoming.where, "a snapshot comes before any branch")
            if last_seq is not None and part.sequence_id <= last_seq:
                raise fail(incoming.where, f"snapshot {part.sequence_id} does not come after {last_seq}")
            last_seq, steps = part.sequence_id, steps + 1
        elif part.app_id not in branches:
            raise fail(incoming.where, f"a rating names branch {part.app_id}, which is not in the file")
    for child, parent in parents:
        if parent not in branches:
            raise fail(incoming.where, f"branch {child} forked from {parent}, which is not in the file")
    _check_no_cycle(dict(parents), incoming.where)
    return steps


def _check_no_cycle(parent_of: dict[str, str], where: str) -> None:
    """Every fork chain ends at a branch started empty (a cycle would hide its branches from the tree)."""
    for start in parent_of:
        seen, at = {start}, parent_of.get(start)
        while at is not None:
            if at in seen:
                raise fail(where, f"branch {start} is forked from itself through its parents")
            seen.add(at)
            at = parent_of.get(at)
