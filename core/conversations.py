"""`ConversationStore`: the catalog of conversations and their branches and snapshots, for browsing.

Listing reads only `burrow_conversations` (newest activity first, through its index), so the
sidebar stays fast with any number of snapshots. Snapshot tables are paged; states load one at a time.
"""
from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, bindparam, delete, func, select, update

from core.persistence import SQLAlchemyPersister, StorageError, plain_text, storage_key
from core.schema import TABLES, App, Conversation, ListItem, Snapshot, StateValue

MAX_TITLE_CHARS = 200
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


@dataclasses.dataclass(frozen=True)
class ConversationSummary:
    partition_key: str
    title: str
    created_at: datetime
    updated_at: datetime
    message_count: int
    latest_app_id: str
    stored_bytes: int
    activity: int


@dataclasses.dataclass(frozen=True)
class BranchSummary:
    app_id: str
    created_at: datetime
    updated_at: datetime
    last_sequence_id: int
    forked_from_app_id: str | None
    forked_from_sequence_id: int | None


@dataclasses.dataclass(frozen=True)
class SnapshotSummary:
    sequence_id: int
    position: str
    status: str
    created_at: datetime
    stored_bytes: int


def is_valid_conversation_id(value: str | None) -> bool:
    """Conversation ids in URLs: letters, digits and - _ . : only, at most 128 characters."""
    return bool(value) and _ID_PATTERN.fullmatch(value) is not None


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _like_pattern(text: str) -> str:
    escaped = plain_text(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


_SUMMARY_COLUMNS = tuple(Conversation.__table__.c[name] for name in (
    "partition_key", "title", "created_at", "updated_at", "message_count", "latest_app_id", "stored_bytes", "activity"))
_LISTS: dict[tuple[bool, bool], Any] = {}


def _list_statement(search: bool, cursor: bool) -> Any:
    """The catalog page query, built once per shape: the sidebar runs it on every rerun."""
    if (search, cursor) not in _LISTS:
        table = Conversation.__table__
        query = select(*_SUMMARY_COLUMNS).order_by(table.c.activity.desc()).limit(bindparam("b_limit"))
        if search:
            query = query.where(func.lower(table.c.title).like(bindparam("b_pattern"), escape="\\"))
        if cursor:
            query = query.where(table.c.activity < bindparam("b_before"))
        _LISTS[(search, cursor)] = query
    return _LISTS[(search, cursor)]


class ConversationStore:
    """Read and manage the conversation catalog that the persister keeps up to date."""

    def __init__(self, persister: SQLAlchemyPersister):
        self.persister = persister
        self.engine = persister.engine

    def _run(self, work, write: bool = False, single_read: bool = False):  # noqa: ANN001, ANN202
        def run():  # noqa: ANN202
            options = {"sqlite_immediate": True} if write else {"sqlite_single_read": single_read}
            with self.engine.connect().execution_options(**options) as conn, conn.begin():
                return work(conn)

        return self.persister._guard(run)

    # ---- conversations ------------------------------------------------------------------------
    def list(self, search: str = "", limit: int = 50, before_activity: int | None = None) -> list[ConversationSummary]:
        """Newest activity first; `before_activity` is the cursor for the next page."""
        params: dict[str, Any] = {"b_limit": limit}
        if search.strip():
            params["b_pattern"] = _like_pattern(search.strip())
        if before_activity is not None:
            params["b_before"] = before_activity
        query = _list_statement("b_pattern" in params, "b_before" in params)
        return self._run(lambda conn: [self._summary(row) for row in conn.execute(query, params)], single_read=True)

    def count(self, search: str = "") -> int:
        query = select(func.count()).select_from(Conversation)
        if search.strip():
            query = query.where(func.lower(Conversation.title).like(_like_pattern(search.strip()), escape="\\"))
        return self._run(lambda conn: conn.execute(query).scalar_one(), single_read=True)

    def get(self, partition_key: str | None) -> ConversationSummary | None:
        query = select(*_SUMMARY_COLUMNS).where(Conversation.partition_key == storage_key(partition_key))
        return self._run(lambda conn: next((self._summary(r) for r in conn.execute(query)), None), single_read=True)

    def rename(self, partition_key: str | None, title: str) -> None:
        """Sets a custom title (trimmed, at most 200 characters); an empty one restores the default."""
        title = " ".join(plain_text(title).split())[:MAX_TITLE_CHARS]
        key = storage_key(partition_key)

        def work(conn: Connection) -> None:
            default = self._default_title(conn, key) if not title else None
            values = dict(title=title, title_custom=True) if title else dict(title=default, title_custom=False)
            done = conn.execute(update(Conversation).where(Conversation.partition_key == key).values(**values))
            if done.rowcount == 0:
                raise StorageError(f"No saved conversation {key!r} to rename.")

        self._run(work, write=True)

    def delete(self, partition_key: str | None) -> bool:
        """Removes the conversation, every branch and every snapshot of it; True if it existed."""
        key = storage_key(partition_key)

        def work(conn: Connection) -> bool:
            refs = select(App.id).where(App.partition_key == key).scalar_subquery()
            for table in (ListItem, StateValue, Snapshot):
                conn.execute(delete(table).where(table.app_ref.in_(refs)))
            conn.execute(delete(App).where(App.partition_key == key))
            return conn.execute(delete(Conversation).where(Conversation.partition_key == key)).rowcount > 0

        existed = self._run(work, write=True)
        self.persister.forget(key)
        return existed

    def vacuum(self, full: bool = False) -> None:
        """Gives the space of deleted conversations back to the operating system.

        A delete frees its pages for later saves, but the file does not shrink by itself. SQLite:
        VACUUM rewrites the whole file (seconds per 100 MB; writers wait meanwhile).
        PostgreSQL: autovacuum already makes deleted rows reusable; `full=True` runs VACUUM FULL,
        which returns the space to the OS but locks each table while it is rewritten.
        """
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        raw = self.engine.raw_connection()
        try:
            self._vacuum(raw.driver_connection, full)
        except dbapi_error as exc:
            raise StorageError(f"Could not vacuum the database at {self.persister.url}: {exc}") from exc
        finally:
            raw.close()

    def _vacuum(self, connection: Any, full: bool) -> None:
        if self.engine.dialect.name == "sqlite":
            connection.execute("VACUUM")  # the pool's SQLite connections run outside transactions
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return
        connection.autocommit = True  # VACUUM cannot run inside a transaction
        try:
            for table in reversed(TABLES):
                connection.execute(f"VACUUM {'FULL ' if full else ''}{table.name}")
        finally:
            connection.autocommit = False

    # ---- branches and snapshots --------------------------------------------------------------
    def branches(self, partition_key: str | None) -> list[BranchSummary]:
        query = (select(App).where(App.partition_key == storage_key(partition_key)).order_by(App.activity.desc()))
        return self._run(lambda conn: [
            BranchSummary(a.app_id, _utc(a.created_at), _utc(a.updated_at), a.last_sequence_id,
                          a.forked_from_app_id, a.forked_from_sequence_id)
            for a in conn.execute(query)])

    def snapshots(self, partition_key: str | None, app_id: str, offset: int = 0, limit: int = 100,
                  newest_first: bool = False) -> list[SnapshotSummary]:
        """One page of a branch's snapshots (metadata only: states load one at a time)."""
        order = Snapshot.sequence_id.desc() if newest_first else Snapshot.sequence_id
        query = (select(Snapshot.sequence_id, Snapshot.position, Snapshot.status, Snapshot.created_at,
                        Snapshot.stored_bytes)
                 .join(App, App.id == Snapshot.app_ref)
                 .where(App.partition_key == storage_key(partition_key), App.app_id == app_id)
                 .order_by(order).offset(offset).limit(limit))
        return self._run(lambda conn: [
            SnapshotSummary(r.sequence_id, r.position, r.status, _utc(r.created_at), r.stored_bytes)
            for r in conn.execute(query)])

    def snapshot_count(self, partition_key: str | None, app_id: str) -> int:
        query = (select(func.count()).select_from(Snapshot).join(App, App.id == Snapshot.app_ref)
                 .where(App.partition_key == storage_key(partition_key), App.app_id == app_id))
        return self._run(lambda conn: conn.execute(query).scalar_one())

    def previous_sequence_id(self, partition_key: str | None, app_id: str, sequence_id: int) -> int | None:
        """The step saved just before `sequence_id` on this branch (for "what changed")."""
        query = (select(func.max(Snapshot.sequence_id)).join(App, App.id == Snapshot.app_ref)
                 .where(App.partition_key == storage_key(partition_key), App.app_id == app_id,
                        Snapshot.sequence_id < sequence_id))
        return self._run(lambda conn: conn.execute(query).scalar())

    # ---- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _summary(row: Any) -> ConversationSummary:
        # Positional unpacking (in _SUMMARY_COLUMNS order): by-name Row access cost more than the query.
        key, title, created_at, updated_at, message_count, latest_app_id, stored_bytes, activity = row
        return ConversationSummary(key, title or "Untitled conversation", _utc(created_at), _utc(updated_at),
                                   message_count, latest_app_id, stored_bytes, activity)

    def _default_title(self, conn: Connection, key: str) -> str | None:
        """The first user message of the newest branch, as the persister would title it."""
        from core.persistence import _catalog_facts

        state = self.persister._load(conn, key, None, None)
        return _catalog_facts(state[1])[1] if state else None
