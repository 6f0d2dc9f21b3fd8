"""A conversation as a tree of messages: which branch shows which version of each message.

Every branch starts with the messages it inherited at its fork (none for a branch started empty)
and adds its own. So message `i` of a branch is *owned* by the nearest branch up its fork chain
that wrote it. Two branches show the same versions of messages 0..i-1 exactly when the same branch
owns their message i-1; then the different owners of their message i are its versions ("< 2/3 >").
Pure functions over `BranchShape`s (core/storage/lineage.py): nothing here reads the database.
"""
from __future__ import annotations

import dataclasses

from core.storage import BranchShape


@dataclasses.dataclass(frozen=True)
class Versions:
    """The versions of one message: the branch to open for each (oldest version first), and which is shown."""

    index: int
    branches: tuple[str, ...]
    current: int  # position of the shown branch's version in `branches`

    @property
    def count(self) -> int:
        return len(self.branches)


class ConversationTree:
    """The branches of one conversation, most recently written first."""

    def __init__(self, shapes: list[BranchShape]):
        self.shapes = list(shapes)
        self._by_id = {shape.app_id: shape for shape in shapes}

    def __contains__(self, app_id: object) -> bool:
        return app_id in self._by_id

    def get(self, app_id: str) -> BranchShape | None:
        return self._by_id.get(app_id)

    def owner(self, app_id: str, index: int) -> str | None:
        """The branch that wrote message `index` of `app_id` (None when the branch has no such message)."""
        shape = self._by_id.get(app_id)
        if shape is None or not 0 <= index < shape.length:
            return None
        for _ in range(len(self._by_id)):  # a fork chain is never longer than the number of branches
            parent = self._by_id.get(shape.parent) if shape.parent else None
            if index >= shape.inherited or parent is None:
                return shape.app_id
            shape = parent
        return shape.app_id

    def versions(self, app_id: str, index: int) -> Versions | None:
        """The versions of message `index` as seen from `app_id`; None when it has only one."""
        mine = self.owner(app_id, index)
        if mine is None:
            return None
        prefix = self.owner(app_id, index - 1) if index > 0 else None
        open_for: dict[str, str] = {}  # version owner -> branch to open for it (most recently written)
        for shape in self.shapes:
            version = self.owner(shape.app_id, index)
            if version is None or (index > 0 and self.owner(shape.app_id, index - 1) != prefix):
                continue
            open_for.setdefault(version, shape.app_id)
        if len(open_for) < 2:
            return None
        open_for[mine] = app_id  # the shown version stays on the shown branch
        ordered = sorted(open_for, key=lambda owner: (self._by_id[owner].created_at, owner))
        return Versions(index, tuple(open_for[o] for o in ordered), ordered.index(mine))

    def all_versions(self, app_id: str) -> dict[int, Versions]:
        """Every message of `app_id` that has more than one version, by index.

        Versions can only start where some branch's own messages start, so only those indices are looked at.
        """
        starts = {shape.inherited for shape in self.shapes if shape.length > shape.inherited}
        found = {index: self.versions(app_id, index) for index in sorted(starts)}
        return {index: versions for index, versions in found.items() if versions is not None}

    def children(self, app_id: str) -> list[BranchShape]:
        """Branches forked from `app_id`, oldest first."""
        return sorted((s for s in self.shapes if s.parent == app_id), key=lambda s: (s.created_at, s.app_id))

    def roots(self) -> list[BranchShape]:
        """Branches with no parent here (the original, and any started empty), oldest first."""
        return sorted((s for s in self.shapes if s.parent not in self._by_id), key=lambda s: (s.created_at, s.app_id))


@dataclasses.dataclass(frozen=True)
class OutlineEntry:
    """One branch in the outline of a tree: how deep it sits and the message where it diverges."""

    shape: BranchShape
    depth: int
    diverges_with: dict | None  # its first own message (None: it has none yet)


def outline(tree: ConversationTree, first_own: dict[str, dict | None]) -> list[OutlineEntry]:
    """The branches depth first (each after the one it forked from, siblings oldest first)."""
    entries: list[OutlineEntry] = []
    seen: set[str] = set()

    def visit(shape: BranchShape, depth: int) -> None:
        if shape.app_id in seen:
            return
        seen.add(shape.app_id)
        entries.append(OutlineEntry(shape, depth, first_own.get(shape.app_id)))
        for child in tree.children(shape.app_id):
            visit(child, depth + 1)

    for root in tree.roots():
        visit(root, 0)
    return entries
