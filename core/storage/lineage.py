"""What a conversation's tree is built from: where each branch forked, and how many messages each step holds.

Read from the branch rows and the snapshots' manifests only (a manifest says a list's length without
its items), so finding "the step just before message 7" or a branch's fork point never loads a state.
Within one branch the history only grows, so its steps' message counts never decrease.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import aliased

from core.storage.codec import list_length
from core.storage.schema import App, Snapshot, as_utc

if TYPE_CHECKING:
    from core.storage.engine import Database

HISTORY = "chat_history"


@dataclasses.dataclass(frozen=True)
class BranchShape:
    """One branch as the tree needs it: its parent and fork step, messages inherited and messages now."""

    app_id: str
    created_at: datetime
    activity: int  # larger = written more recently
    parent: str | None
    fork_sequence_id: int | None
    inherited: int  # messages taken from the parent at the fork (0 for a branch that started empty)
    length: int  # messages in its latest step


@dataclasses.dataclass(frozen=True)
class StepLength:
    sequence_id: int
    position: str
    status: str
    messages: int


class Lineage:
    """Reads branch shapes and step lengths of one database."""

    def __init__(self, database: "Database"):
        self.database = database

    def branches(self, partition_key: str) -> list[BranchShape]:
        """Every branch of a conversation, most recently written first."""
        first, last = aliased(Snapshot), aliased(Snapshot)
        first_seq = (select(func.min(Snapshot.sequence_id)).where(Snapshot.app_ref == App.id)
                     .correlate(App).scalar_subquery())
        query = (select(App.app_id, App.created_at, App.activity, App.forked_from_app_id,
                        App.forked_from_sequence_id, first.manifest, last.manifest.label("last_manifest"))
                 .select_from(App).join(first, (first.app_ref == App.id) & (first.sequence_id == first_seq))
                 .join(last, (last.app_ref == App.id) & (last.sequence_id == App.last_sequence_id))
                 .where(App.partition_key == partition_key).order_by(App.activity.desc()))
        return self.database.read(lambda conn: [_shape(row) for row in conn.execute(query)])

    def steps(self, partition_key: str, app_id: str) -> list[StepLength]:
        """A branch's steps in order, each with its message count."""
        query = (select(Snapshot.sequence_id, Snapshot.position, Snapshot.status, Snapshot.manifest)
                 .join(App, App.id == Snapshot.app_ref)
                 .where(App.partition_key == partition_key, App.app_id == app_id).order_by(Snapshot.sequence_id))
        return self.database.read(lambda conn: [
            StepLength(row.sequence_id, row.position, row.status, list_length(row.manifest, HISTORY) or 0)
            for row in conn.execute(query)])


def _shape(row) -> BranchShape:  # noqa: ANN001 - a result row
    forked = row.forked_from_app_id is not None
    return BranchShape(row.app_id, as_utc(row.created_at), row.activity, row.forked_from_app_id,
                       row.forked_from_sequence_id,
                       (list_length(row.manifest, HISTORY) or 0) if forked else 0,
                       list_length(row.last_manifest, HISTORY) or 0)
