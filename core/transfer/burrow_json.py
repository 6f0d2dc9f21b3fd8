"""Burrow JSON (docs/export-format.md): one conversation with every branch, snapshot and rating.

Written as it is read from the database and read back with ijson, one branch at a time, so neither
side holds more than a branch. Each snapshot stores only what changed since the branch's previous
one (the state as stored, delta-encoded): a 1,000-turn chat has 3,000 snapshots of up to 2,000
messages each, which written out whole would be gigabytes for a megabyte of text.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TextIO

import ijson
from burr.core import serde

from core.transfer.model import FORMAT, VERSION, BranchStart, Incoming, Part, Rating, Step, fail

STATUSES = ("completed", "failed")
MAX_ID_CHARS = 255  # the database's columns for branch ids and action names
MAX_SEQUENCE_ID = 2**31 - 1
_MISSING = object()


# ---- writing ---------------------------------------------------------------------------------
def delta(previous: dict[str, Any] | None, state: dict[str, Any]) -> dict[str, Any]:
    """What turns `previous` into `state`: keys set, lists appended to, keys removed (empty parts left out)."""
    previous = previous or {}
    sets: dict[str, Any] = {}
    appends: dict[str, list] = {}
    for key, value in state.items():
        old = previous.get(key, _MISSING)
        if old is not _MISSING and type(old) is type(value) and (old is value or old == value):
            continue
        if (isinstance(old, list) and isinstance(value, list) and len(value) > len(old)
                and value[: len(old)] == old):
            appends[key] = value[len(old):]
        else:
            sets[key] = value
    out: dict[str, Any] = {}
    if sets:
        out["set"] = sets
    if appends:
        out["append"] = appends
    removed = [key for key in previous if key not in state]
    if removed:
        out["unset"] = removed
    return out


def write_conversation(out: TextIO, header: dict[str, Any], feedback: list[dict[str, Any]],
                       branches: Iterable[tuple[dict[str, Any], dict | None, Iterable[dict[str, Any]]]]) -> None:
    """Writes one Burrow JSON document as the branches' snapshots arrive (each a dict with `state`).

    A branch comes with its base: the parent's state at the fork when the parent was written earlier
    in the file (its first snapshot is then a change to that state, marked "from_parent"), else None."""
    dump = lambda value: json.dumps(value, ensure_ascii=False)  # noqa: E731
    out.write(f'{{"format": {dump(FORMAT)}, "version": {VERSION}, "conversation": {dump(header)},\n')
    out.write(f' "feedback": {dump(feedback)},\n "branches": [')
    for number, (branch, base, snapshots) in enumerate(branches):
        out.write(",\n" if number else "\n")
        out.write(dump(branch)[:-1] + ', "snapshots": [')
        previous = base
        for index, snapshot in enumerate(snapshots):
            state = snapshot.pop("state")
            out.write(",\n  " if index else "\n  ")
            marked = {"from_parent": True} if index == 0 and base is not None else {}
            out.write(dump({**snapshot, **marked, **delta(previous, state)}))
            previous = state
        out.write("]}")
    out.write("\n]}\n")


# ---- reading ---------------------------------------------------------------------------------
def first_value(source: BinaryIO, prefix: str) -> Any:
    """The first value at `prefix` (ijson's dotted path), or _MISSING; stops reading once found."""
    source.seek(0)
    return next(iter(ijson.items(source, prefix, use_float=True)), _MISSING)


def read_burrow(source: BinaryIO, where: str) -> Incoming:
    """Checks the header of a Burrow JSON file and returns its conversation, to be read part by part."""
    if first_value(source, "format") != FORMAT:
        raise fail(where, f'not a Burrow JSON export (no "format": "{FORMAT}")')
    version = first_value(source, "version")
    if version != VERSION:
        raise fail(where, f"format version {version if version is not _MISSING else 'missing'} is not one this "
                          f"Burrow reads (it reads version {VERSION})")
    conversation = first_value(source, "conversation")
    if not isinstance(conversation, dict):
        raise fail(where, '"conversation" is missing or not an object')
    feedback = first_value(source, "feedback")
    feedback = [] if feedback is _MISSING else feedback
    if not isinstance(feedback, list):
        raise fail(where, '"feedback" is not a list')
    source_id, title = conversation.get("id"), conversation.get("title")
    if not isinstance(source_id, (str, type(None))) or not isinstance(title, (str, type(None))):
        raise fail(where, 'conversation "id" and "title" must be strings')
    ratings = [_rating(item, f"{where}: feedback item {n}") for n, item in enumerate(feedback, 1)]
    return Incoming(source_id, title, lambda: _parts(source, where, ratings), where, keeps_branch_ids=True)


def _fork_points(source: BinaryIO) -> set[tuple[str, Any]]:
    """(parent, fork sequence id) of every branch, read from parse events only (no branch is built)."""
    source.seek(0)
    points: set[tuple[str, Any]] = set()
    found: dict[str, Any] = {}
    for prefix, event, value in ijson.parse(source, use_float=True):
        if prefix == "branches.item" and event in ("start_map", "end_map"):
            if event == "end_map" and isinstance(found.get("parent"), str):
                points.add((found["parent"], found.get("fork_sequence_id")))
            found = {}
        elif prefix in ("branches.item.parent", "branches.item.fork_sequence_id"):
            found[prefix.rpartition(".")[2]] = value
    return points


def _parts(source: BinaryIO, where: str, ratings: list[Rating]) -> Iterator[Part]:
    needed = _fork_points(source)
    kept: dict[tuple[str, Any], dict[str, Any]] = {}  # states at fork points, for the branches forked there
    source.seek(0)
    count = 0
    for count, branch in enumerate(ijson.items(source, "branches.item", use_float=True), 1):
        yield from _branch(branch, f"{where}: branch {count}", needed, kept)
    if count == 0:
        raise fail(where, 'no branches (a "branches" list with at least one branch)')
    yield from ratings


def _branch(branch: Any, where: str, needed: set, kept: dict) -> Iterator[Part]:
    if not isinstance(branch, dict) or not _is_name(branch.get("app_id")):
        raise fail(where, f'not an object with an "app_id" string (1 to {MAX_ID_CHARS} characters)')
    parent, fork = branch.get("parent"), branch.get("fork_sequence_id")
    if not (parent is None or _is_name(parent)) or (parent is not None and not _is_seq(fork)):
        raise fail(where, '"parent" must be a branch id with an integer "fork_sequence_id", or null')
    snapshots = branch.get("snapshots")
    if not isinstance(snapshots, list) or not snapshots:
        raise fail(where, 'no "snapshots" (a list with at least one snapshot)')
    yield BranchStart(branch["app_id"], parent, fork if parent is not None else None)
    state, marked = _base(branch, snapshots[0], kept, where)
    for number, snapshot in enumerate(snapshots, 1):
        step, state = _step(snapshot, state, marked, f"{where}: snapshot {number}")
        if (branch["app_id"], step.sequence_id) in needed:
            kept[(branch["app_id"], step.sequence_id)] = state
        yield step


def _base(branch: dict, first: Any, kept: dict, where: str) -> tuple[dict[str, Any] | None, set[str]]:
    """What the first snapshot changes: nothing, or (marked "from_parent") the parent's state at the fork;
    and which of its keys hold a serde marker."""
    if not (isinstance(first, dict) and first.get("from_parent")):
        return None, set()
    base = kept.get((branch.get("parent"), branch.get("fork_sequence_id")))
    if base is None:
        raise fail(where, f"snapshot 1 changes step {branch.get('fork_sequence_id')} of branch "
                          f"{branch.get('parent')}, which is not earlier in the file")
    return base, {key for key, value in base.items() if serde.KEY in json.dumps(value)}


def _step(snapshot: Any, previous: dict[str, Any] | None, marked: set[str], where: str) -> tuple[Step, dict[str, Any]]:
    if not isinstance(snapshot, dict):
        raise fail(where, "not an object")
    seq, position, status = snapshot.get("sequence_id"), snapshot.get("position"), snapshot.get("status")
    if not _is_seq(seq):
        raise fail(where, f'"sequence_id" must be a whole number from 0 to {MAX_SEQUENCE_ID:,}')
    if not _is_name(position):
        raise fail(where, '"position" must be the name of the action that ran')
    if status not in STATUSES:
        raise fail(where, f'"status" must be one of {", ".join(STATUSES)}')
    state = _apply(previous, snapshot, where)
    error, facts = snapshot.get("error"), snapshot.get("facts")
    if not isinstance(error, (str, type(None))) or not isinstance(facts, (dict, type(None))):
        raise fail(where, '"error" must be a string and "facts" an object')
    _track_markers(snapshot, marked)
    return Step(seq, position, status, state, error, facts, plain=not marked), state


def _track_markers(snapshot: dict[str, Any], marked: set[str]) -> None:
    """Keeps `marked` current from this snapshot's changes only (a full scan per step would be O(n^2))."""
    marked.difference_update(snapshot.get("unset", []))
    for key, value in snapshot.get("set", {}).items():
        (marked.add if serde.KEY in json.dumps(value) else marked.discard)(key)
    for key, items in snapshot.get("append", {}).items():
        if serde.KEY in json.dumps(items):
            marked.add(key)


def _apply(previous: dict[str, Any] | None, snapshot: dict[str, Any], where: str) -> dict[str, Any]:
    """The state after this snapshot's changes (a new dict; lists appended to are new lists)."""
    sets, appends, unset = snapshot.get("set", {}), snapshot.get("append", {}), snapshot.get("unset", [])
    if not isinstance(sets, dict) or not isinstance(appends, dict) or not isinstance(unset, list):
        raise fail(where, '"set" and "append" must be objects and "unset" a list')
    state = {key: value for key, value in (previous or {}).items() if key not in unset}
    state.update(sets)
    for key, items in appends.items():
        if not isinstance(state.get(key), list) or not isinstance(items, list):
            raise fail(where, f'"append" adds to {key!r}, which is not a list in the snapshot before')
        state[key] = [*state[key], *items]
    return state


def _rating(item: Any, where: str) -> Rating:
    if not isinstance(item, dict):
        raise fail(where, "not an object")
    app_id, seq, index = item.get("app_id"), item.get("sequence_id"), item.get("message_index")
    thumbs, comment, tags = item.get("thumbs_up"), item.get("comment"), item.get("tags", [])
    if not _is_name(app_id) or not _is_seq(seq) or not _is_seq(index):
        raise fail(where, 'needs "app_id", "sequence_id" and "message_index"')
    if not isinstance(thumbs, (bool, type(None))) or not isinstance(comment, (str, type(None))):
        raise fail(where, '"thumbs_up" must be true, false or null and "comment" a string')
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise fail(where, '"tags" must be a list of strings')
    return Rating(app_id, seq, index, thumbs, comment, tuple(tags))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_seq(value: Any) -> bool:
    """A sequence id or message index the database's integer columns hold."""
    return _is_int(value) and 0 <= value <= MAX_SEQUENCE_ID


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS
