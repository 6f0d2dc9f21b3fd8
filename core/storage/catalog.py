"""The conversation catalog: the only code that reads or writes `burrow_conversations`.

`record_step` keeps a conversation's row current inside the persister's save transaction;
`ConversationStore` lists, renames and deletes conversations and pages through their branches and
snapshots. Listing reads only the catalog table (pinned first, then newest activity, through the
(pinned, activity) index), so the sidebar stays fast with any number of snapshots. Snapshot tables are paged; states load one at a time.
"""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Boolean, Connection, bindparam, case, delete, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from core.errors import StorageError
from core.storage.feedback import forget_feedback
from core.storage.leases import forget_conversation
from core.storage.search import forget_conversation as forget_search
from core.storage.schema import LOCAL_OWNER, TABLES, App, Conversation, ListItem, Snapshot, StateValue, as_utc
from core.text import plain_text, title_text

if TYPE_CHECKING:
    from core.storage.persister import SQLAlchemyPersister


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
    pinned: bool = False
    owner: str = LOCAL_OWNER  # the subject of the user it belongs to (core/users.py)

    @property
    def cursor(self) -> int:
        """Where the listing goes on after this row: `ConversationStore.list(before_activity=cursor)`."""
        return list_cursor(self.pinned, self.activity)


# A page cursor is one integer, so every caller (and the API's `cursor=`) keeps its int: the row's place
# in the listing's order, pinned rows above PIN_RANK. Below 2**53 it survives a JavaScript number; an
# unpinned row's cursor is its activity, as before pins.
PIN_RANK = 2 ** 52


def list_cursor(pinned: bool, activity: int) -> int:
    """The cursor after the row (pinned, activity): its rank in the listing's descending order."""
    return activity + PIN_RANK if pinned else activity


def _cursor_row(cursor: int) -> tuple[bool, int]:
    """(pinned, activity) of the row a cursor came from."""
    return (True, cursor - PIN_RANK) if cursor >= PIN_RANK else (False, cursor)


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
    error: str | None = None  # why a failed step failed, as the user was told


def storage_key(partition_key: str | None) -> str:
    """Burr allows partition_key=None; it is stored as the empty string."""
    return "" if partition_key is None else partition_key


def _like_pattern(text: str) -> str:
    escaped = plain_text(text).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


_SUMMARY_COLUMNS = tuple(Conversation.__table__.c[name] for name in (
    "partition_key", "title", "created_at", "updated_at", "message_count", "latest_app_id", "stored_bytes", "activity",
    "pinned", "owner"))
_LISTS: dict[tuple[bool, bool, bool], Any] = {}


def _list_statement(search: bool, cursor: bool, owned: bool) -> Any:
    """The catalog page query, built once per shape: the sidebar runs it on every rerun. With an owner
    it reads the (owner, pinned, activity) index; without one (an admin's view) the (pinned, activity) one."""
    if (search, cursor, owned) not in _LISTS:
        table = Conversation.__table__
        query = (select(*_SUMMARY_COLUMNS).order_by(table.c.pinned.desc(), table.c.activity.desc())
                 .limit(bindparam("b_limit")))
        if owned:
            query = query.where(table.c.owner == bindparam("b_owner"))
        if search:
            query = query.where(func.lower(table.c.title).like(bindparam("b_pattern"), escape="\\"))
        if cursor:  # one row-value comparison: the (pinned, activity) index range after the cursor's row
            query = query.where(tuple_(table.c.pinned, table.c.activity)
                                < tuple_(bindparam("b_pinned", type_=Boolean), bindparam("b_before")))
        _LISTS[(search, cursor, owned)] = query
    return _LISTS[(search, cursor, owned)]


class ConversationStore:
    """Read and manage the conversation catalog that the persister keeps up to date."""

    def __init__(self, persister: "SQLAlchemyPersister"):
        self.persister = persister
        self.database = persister.database
        self.engine = persister.engine

    # ---- conversations ------------------------------------------------------------------------
    def list(self, search: str = "", limit: int = 50, before_activity: int | None = None,
             owner: str | None = None) -> list[ConversationSummary]:
        """Pinned first, then newest activity; `before_activity` is the last row's `cursor` (next page).
        `owner` keeps one user's conversations; None lists everyone's."""
        params: dict[str, Any] = {"b_limit": limit}
        if owner is not None:
            params["b_owner"] = owner
        if search.strip():
            params["b_pattern"] = _like_pattern(search.strip())
        if before_activity is not None:
            params["b_pinned"], params["b_before"] = _cursor_row(before_activity)
        query = _list_statement("b_pattern" in params, "b_before" in params, "b_owner" in params)
        return self.database.read(lambda conn: [self._summary(row) for row in conn.execute(query, params)])

    def count(self, search: str = "", owner: str | None = None) -> int:
        query = select(func.count()).select_from(Conversation)
        if owner is not None:
            query = query.where(Conversation.owner == owner)
        if search.strip():
            query = query.where(func.lower(Conversation.title).like(_like_pattern(search.strip()), escape="\\"))
        return self.database.read(lambda conn: conn.execute(query).scalar_one())

    def get(self, partition_key: str | None) -> ConversationSummary | None:
        query = select(*_SUMMARY_COLUMNS).where(Conversation.partition_key == storage_key(partition_key))
        return self.database.read(lambda conn: next((self._summary(r) for r in conn.execute(query)), None))

    def owner(self, partition_key: str | None) -> str | None:
        """Whose conversation it is; None when there is no such conversation."""
        query = select(Conversation.owner).where(Conversation.partition_key == storage_key(partition_key))
        return self.database.read(lambda conn: conn.execute(query).scalar())

    def owners(self, partition_keys: list[str]) -> dict[str, str]:
        """The owners of those of these conversations that exist."""
        query = select(Conversation.partition_key, Conversation.owner).where(
            Conversation.partition_key.in_([storage_key(k) for k in partition_keys]))
        return self.database.read(lambda conn: {row[0]: row[1] for row in conn.execute(query)})

    def rename(self, partition_key: str | None, title: str) -> None:
        """Sets a custom title (one line, see core.text.title_text); an empty one restores the default."""
        title = title_text(title)
        key = storage_key(partition_key)
        default = None if title else self._default_title(key)

        def work(conn: Connection) -> None:
            values = dict(title=title, title_custom=True) if title else dict(title=default, title_custom=False)
            done = conn.execute(update(Conversation).where(Conversation.partition_key == key).values(**values))
            if done.rowcount == 0:
                raise StorageError(f"No saved conversation {key!r} to rename.")

        self.database.write(work)

    def pin(self, partition_key: str | None, pinned: bool) -> bool:
        """Pins (lists first, never pruned) or unpins a conversation; False if there is none (deleted
        meanwhile: nothing to do, not an error)."""
        statement = (update(Conversation).where(Conversation.partition_key == storage_key(partition_key))
                     .values(pinned=bool(pinned)))
        return self.database.write(lambda conn: conn.execute(statement).rowcount > 0)

    def hand_over(self, from_owner: str, to_owner: str, partition_key: str | None = None) -> int:
        """Gives `from_owner`'s conversations (or just one of them) to `to_owner`; how many moved."""
        statement = update(Conversation).where(Conversation.owner == from_owner)
        if partition_key is not None:
            statement = statement.where(Conversation.partition_key == storage_key(partition_key))
        return self.database.write(lambda conn: conn.execute(statement.values(owner=to_owner)).rowcount)

    def delete(self, partition_key: str | None) -> bool:
        """Removes the conversation, every branch and every snapshot of it; True if it existed."""
        key = storage_key(partition_key)

        def work(conn: Connection) -> bool:
            refs = select(App.id).where(App.partition_key == key).scalar_subquery()
            for table in (ListItem, StateValue, Snapshot):
                conn.execute(delete(table).where(table.app_ref.in_(refs)))
            conn.execute(delete(App).where(App.partition_key == key))
            forget_conversation(conn, key)
            forget_feedback(conn, key)
            forget_search(conn, key)
            return conn.execute(delete(Conversation).where(Conversation.partition_key == key)).rowcount > 0

        existed = self.database.write(work)
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
        return self.database.read(lambda conn: [
            BranchSummary(a.app_id, as_utc(a.created_at), as_utc(a.updated_at), a.last_sequence_id,
                          a.forked_from_app_id, a.forked_from_sequence_id)
            for a in conn.execute(query)])

    def snapshots(self, partition_key: str | None, app_id: str, offset: int = 0, limit: int = 100,
                  newest_first: bool = False) -> list[SnapshotSummary]:
        """One page of a branch's snapshots (metadata only: states load one at a time)."""
        order = Snapshot.sequence_id.desc() if newest_first else Snapshot.sequence_id
        query = _branch_steps(partition_key, app_id).order_by(order).offset(offset).limit(limit)
        return self.database.read(lambda conn: [_step(r) for r in conn.execute(query)])

    def snapshot(self, partition_key: str | None, app_id: str, sequence_id: int) -> SnapshotSummary | None:
        query = _branch_steps(partition_key, app_id).where(Snapshot.sequence_id == sequence_id)
        return self.database.read(lambda conn: next((_step(r) for r in conn.execute(query)), None))

    def step_error(self, partition_key: str | None, app_id: str, sequence_id: int) -> tuple[str | None, dict]:
        """The reason saved with a failed step (None when there is none) and the failed reply's facts."""
        query = (select(Snapshot.error, Snapshot.facts).join(App, App.id == Snapshot.app_ref)
                 .where(App.partition_key == storage_key(partition_key), App.app_id == app_id,
                        Snapshot.sequence_id == sequence_id))
        row = self.database.read(lambda conn: conn.execute(query).first())
        return (row.error, json.loads(row.facts) if row.facts else {}) if row else (None, {})

    def note_failure(self, partition_key: str | None, app_id: str, message: str, facts: dict | None = None) -> None:
        """Saves the reason (and the failed reply's facts) with the branch's newest step, when that step
        failed (Burr saved it just before)."""
        key = storage_key(partition_key)
        newest = (select(func.max(Snapshot.id)).join(App, App.id == Snapshot.app_ref)
                  .where(App.partition_key == key, App.app_id == app_id).scalar_subquery())
        statement = (update(Snapshot).where(Snapshot.id == newest, Snapshot.status == "failed")
                     .values(error=plain_text(message)[:2000], facts=json.dumps(facts) if facts else None))
        self.database.write(lambda conn: conn.execute(statement))

    def snapshot_count(self, partition_key: str | None, app_id: str) -> int:
        query = (select(func.count()).select_from(Snapshot).join(App, App.id == Snapshot.app_ref)
                 .where(App.partition_key == storage_key(partition_key), App.app_id == app_id))
        return self.database.read(lambda conn: conn.execute(query).scalar_one())

    def previous_sequence_id(self, partition_key: str | None, app_id: str, sequence_id: int) -> int | None:
        """The step saved just before `sequence_id` on this branch (for "what changed")."""
        query = (select(func.max(Snapshot.sequence_id)).join(App, App.id == Snapshot.app_ref)
                 .where(App.partition_key == storage_key(partition_key), App.app_id == app_id,
                        Snapshot.sequence_id < sequence_id))
        return self.database.read(lambda conn: conn.execute(query).scalar())

    # ---- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _summary(row: Any) -> ConversationSummary:
        # Positional unpacking (in _SUMMARY_COLUMNS order): by-name Row access cost more than the query.
        key, title, created_at, updated_at, message_count, latest_app_id, stored_bytes, activity, pinned, owner = row
        return ConversationSummary(key, title or "Untitled conversation", as_utc(created_at), as_utc(updated_at),
                                   message_count, latest_app_id, stored_bytes, activity, bool(pinned), owner)

    def _default_title(self, key: str) -> str | None:
        """The first user message of the newest branch, as `record_step` would title it."""
        state = self.persister.load_serialized(key, None)
        return catalog_facts(state)[1] if state else None


def _branch_steps(partition_key: str | None, app_id: str) -> Any:
    return (select(Snapshot.sequence_id, Snapshot.position, Snapshot.status, Snapshot.created_at,
                   Snapshot.stored_bytes, Snapshot.error)
            .join(App, App.id == Snapshot.app_ref)
            .where(App.partition_key == storage_key(partition_key), App.app_id == app_id))


def _step(row: Any) -> SnapshotSummary:
    return SnapshotSummary(row.sequence_id, row.position, row.status, as_utc(row.created_at), row.stored_bytes,
                           row.error)


def catalog_facts(serialized: dict) -> tuple[int, str | None]:
    """Message count and default title (the first user message, as a title) of a serialized state."""
    history = serialized.get("chat_history")
    history = history if isinstance(history, list) else []  # Burr allows any value; only a list is a chat
    first = next((m.get("content", "") for m in history if isinstance(m, dict) and m.get("role") == "user"), None)
    return len(history), (title_text(str(first)) or None) if first else None


def record_step(conn: Connection, key: str, app_id: str, snapshot_id: int, now: datetime,
                serialized: dict, stored: int, owner: str) -> None:
    """Brings a conversation's catalog row up to date with a step just saved (same transaction)."""
    conn.execute(_upsert_statement(conn.dialect.name), dict(step_row(key, app_id, now, serialized, stored, owner),
                                                            activity=snapshot_id))


def step_row(key: str, app_id: str, now: datetime, serialized: dict, stored: int, owner: str) -> dict[str, Any]:
    """The catalog columns a step sets, but `activity` (the id of its snapshot). `owner` only counts for
    the conversation's first step: the upsert never changes the owner of an existing row."""
    count, title = catalog_facts(serialized)
    return dict(partition_key=key, title=title, title_custom=False, created_at=now, updated_at=now,
                message_count=count, latest_app_id=app_id, stored_bytes=stored, owner=owner)


_UPSERTS: dict[str, Any] = {}
STEP_COLUMNS = ("partition_key", "title", "title_custom", "created_at", "updated_at", "activity", "message_count",
                "latest_app_id", "stored_bytes", "owner")


def _upsert_statement(dialect: str) -> Any:
    """The catalog upsert, built once per dialect (building it cost more than running it)."""
    if dialect not in _UPSERTS:
        _UPSERTS[dialect] = _on_conflict((postgresql.insert if dialect == "postgresql" else sqlite.insert)(
            Conversation.__table__))
    return _UPSERTS[dialect]


def step_upsert_from(source: Any) -> Any:
    """The same upsert on PostgreSQL with its row from `source` (a SELECT of STEP_COLUMNS), so the
    persister's one-statement save (rows.py) updates the catalog exactly as `record_step` does."""
    table = Conversation.__table__
    return _on_conflict(postgresql.insert(table).from_select([table.c[name] for name in STEP_COLUMNS], source))


def _on_conflict(stmt: Any) -> Any:
    table, new = Conversation.__table__, stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=[table.c.partition_key],
        set_=dict(
            updated_at=new.updated_at, activity=new.activity, message_count=new.message_count,
            latest_app_id=new.latest_app_id, stored_bytes=table.c.stored_bytes + new.stored_bytes,
            # A renamed conversation keeps its name; an untitled one takes the first message.
            title=case((table.c.title_custom, table.c.title), else_=func.coalesce(table.c.title, new.title)),
        ),
    )
