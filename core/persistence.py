"""`SQLAlchemyPersister`: Burr's state persister on any SQLAlchemy database (SQLite, PostgreSQL).

Each save is one transaction that writes the snapshot (only what changed, see core/statecodec.py),
moves the branch's pointers and updates the conversation catalog. A step saved twice raises
`SnapshotConflictError` instead of overwriting, which is how two writers on one conversation
(two tabs, two servers) find out about each other.
"""
from __future__ import annotations

import re
import sqlite3
import threading
from collections import OrderedDict
from datetime import datetime, timezone
from typing import Any, Literal

from burr.core import State
from burr.core.persistence import BaseStatePersister, PersistedStateData
from sqlalchemy import Connection, Engine, case, create_engine, event, func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from core.migrations import LATEST, applied_versions, apply_migrations
from core.schema import App, Conversation
from core.listcache import DEFAULT_MAX_BYTES, Branch, ListPrefixCache
from core.snapshot_rows import (find_app, find_branch_snapshot, find_latest_snapshot, insert_app, insert_snapshot,
                                read_state)
from core.statecodec import Manifest, UnreadableSnapshotError, encode
from core.stateserde import Remembered, deserialize_state, serialize_state

TITLE_CHARS = 80
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
SQLITE_BUSY_TIMEOUT = 15.0  # seconds; the driver's `timeout` sets SQLite's busy_timeout
NO_PARTITION = ""  # Burr allows partition_key=None; it is stored as the empty string


class StorageError(RuntimeError):
    """The database could not be read or written; the message says what to check."""


class SnapshotConflictError(StorageError):
    """Another writer already saved this step of this branch."""


def storage_key(partition_key: str | None) -> str:
    return NO_PARTITION if partition_key is None else partition_key


def create_burrow_engine(url: str, **engine_kwargs: Any) -> Engine:
    """An engine with Burrow's connection settings (SQLite: WAL, busy timeout, immediate writes)."""
    if url.startswith("sqlite"):
        if "timeout" not in make_url(url).query:  # `?timeout=N` in the URL sets how long a write waits for a lock
            engine_kwargs.setdefault("connect_args", {}).setdefault("timeout", SQLITE_BUSY_TIMEOUT)
    else:
        engine_kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **engine_kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    if engine.dialect.driver == "psycopg":
        _binary_results_on_request(engine)
    return engine


def _binary_results_on_request(engine: Engine) -> None:
    """Statements marked `burrow_binary_results` get psycopg 3's binary result format: bytea then
    arrives as is, where the text format would send (and make the client decode) twice the bytes in hex."""
    from psycopg.pq import Format

    @event.listens_for(engine, "before_cursor_execute")
    def _binary(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if context is not None and context.execution_options.get("burrow_binary_results"):
            cursor.format = Format.BINARY


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001 - DB-API objects
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("sqlite_single_read"):  # reads whose SELECTs need no common snapshot: no BEGIN/COMMIT
            return
        # Writers take the lock up front, so two writers queue instead of failing with "database is locked".
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")


def describe_error(exc: SQLAlchemyError, url: str) -> str:
    """A one-line, user-facing explanation that never includes the password."""
    where = url.split("@")[-1] if "@" in url else url
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(getattr(exc, "orig", exc)) else type(exc).__name__
    hint = next((hint for marker, hint in _HINTS if marker in reason.lower()), "")
    return f"The database at {where} is not available: {reason}{hint}"


_HINTS = (  # what to check, for the errors people actually meet
    ("readonly", " (check that the database file and its folder are writable)"),
    ("unable to open database file", " (check that the folder exists and is writable)"),
    ("database is locked", " (another program is writing to it; try again, or raise ?timeout= in BURROW_DATABASE_URL)"),
    ("connection refused", " (check that the database server is running and BURROW_DATABASE_URL points at it)"),
)



class SQLAlchemyPersister(BaseStatePersister):
    """Saves every Burr step; loads any step in O(size of that state)."""

    def __init__(self, engine: Engine, cache_size: int = 256, list_cache_bytes: int = DEFAULT_MAX_BYTES):
        self.engine = engine
        self._lock = threading.Lock()
        self._schema_ready = False  # set once the schema is known to be current
        # (partition, app_id) -> (sequence_id, serialized state, manifest, raw values) of the branch's last save
        self._last: OrderedDict[tuple[str, str], tuple[int, dict, Manifest, Remembered]] = OrderedDict()
        self._cache_size = cache_size
        self.list_cache = ListPrefixCache(list_cache_bytes)  # list items already read (see core/listcache.py)
        # Reads run without BEGIN/COMMIT round trips: each statement sees committed rows, and the rows a
        # load reads are never changed, only added to (a merge rewrites chunks into equal items).
        self._reader = engine.execution_options(
            **({"sqlite_single_read": True} if engine.dialect.name == "sqlite" else {"isolation_level": "AUTOCOMMIT"}))

    @classmethod
    def from_url(cls, url: str, *, list_cache_bytes: int = DEFAULT_MAX_BYTES, **engine_kwargs: Any) -> "SQLAlchemyPersister":
        return cls(create_burrow_engine(url, **engine_kwargs), list_cache_bytes=list_cache_bytes)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # ---- schema --------------------------------------------------------------------------------
    def initialize(self) -> None:
        """Creates or upgrades the schema; safe on every start and from several processes at once."""
        self._guard(lambda: apply_migrations(self.engine))
        self._schema_ready = True

    def is_initialized(self) -> bool:
        """Burr asks on every application build; once the schema is current, the answer is remembered."""
        if self._schema_ready:
            return True

        def check() -> bool:
            with self.engine.connect() as conn:
                return LATEST in applied_versions(conn)

        self._schema_ready = self._guard(check)
        return self._schema_ready

    # ---- Burr's loader contract ---------------------------------------------------------------
    def list_app_ids(self, partition_key: str | None, **kwargs: Any) -> list[str]:
        """Branches of a conversation, most recently written first."""
        query = select(App.app_id).where(App.partition_key == storage_key(partition_key)).order_by(App.activity.desc())
        return self._guard(lambda: self._read(lambda conn: list(conn.execute(query).scalars())))

    def load(
        self, partition_key: str | None, app_id: str | None, sequence_id: int | None = None, **kwargs: Any
    ) -> PersistedStateData | None:
        """The snapshot at `sequence_id` (default: latest) of `app_id` (default: most recent branch)."""
        found = self._guard(lambda: self._read(lambda conn: self._load(conn, storage_key(partition_key), app_id, sequence_id)))
        if found is None:
            return None
        row, state, needs_serde = found
        return PersistedStateData(
            partition_key=partition_key, app_id=row.app_id, sequence_id=row.sequence_id, position=row.position,
            state=deserialize_state(state, needs_serde), created_at=row.created_at.isoformat(), status=row.status)

    def load_serialized(self, partition_key: str | None, app_id: str, sequence_id: int | None = None) -> dict | None:
        """The stored (serialized) state of one snapshot, for viewers that show raw JSON."""
        found = self._guard(lambda: self._read(lambda conn: self._load(conn, storage_key(partition_key), app_id, sequence_id)))
        return None if found is None else found[1]

    def _load(self, conn: Connection, key: str, app_id: str | None, sequence_id: int | None) -> tuple | None:
        row = find_branch_snapshot(conn, key, app_id or None, sequence_id)
        if row is None:
            return None
        branch = Branch(key, row.app_id, row.app_ref, row.branch_created_at)
        try:
            state, needs_serde = read_state(conn, branch, Manifest.from_json(row.manifest), self.list_cache)
        except UnreadableSnapshotError as exc:  # e.g. rows gone under the reader: the conversation was deleted meanwhile
            raise StorageError(f"snapshot {row.sequence_id} of {row.app_id!r} could not be read: {exc}") from exc
        loaded = _Loaded(row.app_id, row.sequence_id, row.position, row.status, row.created_at)
        return loaded, state, needs_serde

    # ---- Burr's saver contract ----------------------------------------------------------------
    def save(
        self,
        partition_key: str | None,
        app_id: str,
        sequence_id: int,
        position: str,
        state: State,
        status: Literal["completed", "failed"],
        **kwargs: Any,
    ) -> None:
        """Persists one step. `forked_from=(app_id, sequence_id)` records where a new branch came from."""
        key = storage_key(partition_key)
        with self._lock:
            cached = self._last.get((key, app_id))
        # Reusing the last save's serialized items is right even if another writer moved on since.
        serialized, remembered = serialize_state(state, cached[3] if cached else None)
        try:
            manifest = self._in_write_transaction(
                lambda conn: self._write(conn, key, app_id, sequence_id, position, serialized, status, kwargs.get("forked_from")))
        except IntegrityError as exc:
            self.forget(key, app_id)
            raise SnapshotConflictError(_conflict_message(app_id, sequence_id)) from exc
        except SQLAlchemyError as exc:
            self.forget(key, app_id)
            raise StorageError(describe_error(exc, self.url)) from exc
        self._remember(key, app_id, sequence_id, serialized, manifest, remembered)

    def _in_write_transaction(self, work):  # noqa: ANN001, ANN202 - small internal helper
        """Runs `work(conn)` in one write transaction.

        A SQLite file opened while it was read-only stays read-only for every pooled connection (they
        share the file handle), even once it is writable again: then the pool is closed and the write
        tried once more on fresh connections, so fixing the file needs no restart.
        """
        try:
            with self.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
                return work(conn)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_READONLY:
                raise
            self.engine.dispose()
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            return work(conn)

    def _write(self, conn: Connection, key: str, app_id: str, sequence_id: int, position: str,
               serialized: dict, status: str, forked_from: tuple | None) -> Manifest:
        now = datetime.now(timezone.utc)
        app = find_app(conn, key, app_id, lock=True)
        if app is None:
            app_ref, last_seq = insert_app(conn, key, app_id, now, forked_from), -1
        else:
            app_ref, last_seq = app.id, app.last_sequence_id
        if sequence_id <= last_seq:
            raise SnapshotConflictError(_conflict_message(app_id, sequence_id))
        branch = Branch(key, app_id, app_ref, app.created_at if app is not None else now)
        previous, prev_manifest = self._previous(conn, branch, last_seq)
        enc = encode(serialized, sequence_id, previous, prev_manifest)
        snapshot_id, stored = insert_snapshot(conn, app_ref, sequence_id, position, status, now, enc)
        _upsert_conversation(conn, key, app_id, snapshot_id, now, serialized, stored)
        return enc.manifest

    def _previous(self, conn: Connection, branch: Branch, last_seq: int) -> tuple:
        """The branch's last saved state, from memory when this process wrote it, else from the database."""
        with self._lock:
            cached = self._last.get((branch.partition_key, branch.app_id))
        if cached is not None and cached[0] == last_seq:
            return cached[1], cached[2]
        snapshot = find_latest_snapshot(conn, branch.row_id) if last_seq >= 0 else None
        if snapshot is None:
            return None, None
        manifest = Manifest.from_json(snapshot.manifest)
        return read_state(conn, branch, manifest, self.list_cache)[0], manifest

    def _remember(self, key: str, app_id: str, sequence_id: int, serialized: dict, manifest: Manifest,
                  remembered: Remembered) -> None:
        with self._lock:
            self._last[(key, app_id)] = (sequence_id, serialized, manifest, remembered)
            self._last.move_to_end((key, app_id))
            while len(self._last) > self._cache_size:
                self._last.popitem(last=False)

    def forget(self, partition_key: str | None, app_id: str | None = None) -> None:
        """Drops cached state (after a conflict or a delete) so the next save re-reads the database."""
        key = storage_key(partition_key)
        with self._lock:
            for cached in [k for k in self._last if k[0] == key and app_id in (None, k[1])]:
                del self._last[cached]
        self.list_cache.forget(key, app_id)

    # ---- plumbing -----------------------------------------------------------------------------
    def _read(self, work):  # noqa: ANN001, ANN202 - small internal helper
        with self._reader.connect() as conn, conn.begin():
            return work(conn)

    def _guard(self, work):  # noqa: ANN001, ANN202
        """Runs database work, turning driver errors into a StorageError with a readable message."""
        try:
            return work()
        except SnapshotConflictError:
            raise
        except (OperationalError, SQLAlchemyError) as exc:
            raise StorageError(describe_error(exc, self.url)) from exc

    def schema_tables(self) -> list[str]:
        return self._guard(lambda: inspect(self.engine).get_table_names())


class _Loaded:
    __slots__ = ("app_id", "sequence_id", "position", "status", "created_at")

    def __init__(self, app_id: str, sequence_id: int, position: str, status: str, created_at: datetime):
        self.app_id, self.sequence_id, self.position, self.status = app_id, sequence_id, position, status
        self.created_at = created_at if created_at.tzinfo else created_at.replace(tzinfo=timezone.utc)


def _conflict_message(app_id: str, sequence_id: int) -> str:
    return (f"Step {sequence_id} of branch {app_id} was already saved by another writer "
            "(another tab or server). Reload the conversation to continue from its latest state.")


def plain_text(text: str) -> str:
    """Text every database stores: broken Unicode replaced, control characters (NUL too) removed."""
    return _CONTROL_CHARS.sub("", text.encode("utf-8", "replace").decode("utf-8"))


def _catalog_facts(serialized: dict) -> tuple[int, str | None]:
    """Message count and default title (start of the first user message) from a serialized state."""
    history = serialized.get("chat_history") or []
    first = next((m.get("content", "") for m in history if isinstance(m, dict) and m.get("role") == "user"), None)
    title = " ".join(plain_text(str(first)).split())[:TITLE_CHARS] if first else None
    return len(history), title or None


def _upsert_conversation(conn: Connection, key: str, app_id: str, snapshot_id: int, now: datetime,
                         serialized: dict, stored: int) -> None:
    count, title = _catalog_facts(serialized)
    conn.execute(_upsert_statement(conn.dialect.name), dict(
        partition_key=key, title=title, title_custom=False, created_at=now, updated_at=now,
        activity=snapshot_id, message_count=count, latest_app_id=app_id, stored_bytes=stored))


_UPSERTS: dict[str, Any] = {}


def _upsert_statement(dialect: str) -> Any:
    """The catalog upsert, built once per dialect (building it cost more than running it)."""
    if dialect not in _UPSERTS:
        table = Conversation.__table__
        stmt = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
        new = stmt.excluded
        _UPSERTS[dialect] = stmt.on_conflict_do_update(
            index_elements=[table.c.partition_key],
            set_=dict(
                updated_at=new.updated_at, activity=new.activity, message_count=new.message_count,
                latest_app_id=new.latest_app_id, stored_bytes=table.c.stored_bytes + new.stored_bytes,
                # A renamed conversation keeps its name; an untitled one takes the first message.
                title=case((table.c.title_custom, table.c.title), else_=func.coalesce(table.c.title, new.title)),
            ),
        )
    return _UPSERTS[dialect]
