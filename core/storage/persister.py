"""`SQLAlchemyPersister`: Burr's state persister on any SQLAlchemy database (SQLite, PostgreSQL).

Burr's contract only: save a step, load a step, list a partition's app ids. Each save is one
transaction that writes the snapshot (only what changed, see codec.py), moves the branch's
pointers and updates the conversation catalog (catalog.py owns that table). A step saved twice
raises `SnapshotConflictError` instead of overwriting, which is how two writers on one
conversation (two tabs, two servers) find out about each other.

On PostgreSQL a save on top of the step this process saved last (the usual case) is a single
statement (rows.fast_save): a round trip per statement is most of a save's time there. It writes
only if the branch has not moved since; otherwise the general path below decides, as it always did.

The work of a load, a save and a listing is done by `SnapshotStore`'s methods on an open
Connection, so the async twin (async_persister.py) runs the very same code through `run_sync`.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Literal

from burr.core import State
from burr.core.persistence import BaseStatePersister, PersistedStateData
from sqlalchemy import Connection, Engine, inspect, select
from sqlalchemy.engine import URL

from core.errors import SnapshotConflictError, StorageError, UnreadableSnapshotError
from core.storage.catalog import record_step, step_row, storage_key
from core.storage.codec import Manifest, encode
from core.storage.engine import Database, create_burrow_engine, is_memory_sqlite
from core.storage.listcache import DEFAULT_MAX_BYTES, Branch, ListPrefixCache
from core.storage.migrations import is_current, upgrade
from core.storage.rows import (fast_save, find_app, find_branch_snapshot, find_latest_snapshot, insert_app,
                               insert_snapshot, read_state)
from core.storage.schema import LOCAL_OWNER, App, as_utc
from core.storage.search import index_step, rewrites, rows_to_index
from core.storage.serde import Remembered, deserialize_state, serialize_state


CLAIMS_KEPT = 10_000  # new conversations' owners remembered until their first save (a bound, not a cache)


class SnapshotStore:
    """What the sync and the async persister share: this process's caches, and the work of a load,
    a save and a listing on an open Connection. Also how both are pickled: the URL, not the engine."""

    _cache_size: int
    _engine_kwargs: dict[str, Any]
    fast_saves = True  # PostgreSQL: a save on top of this process's last save is one statement (tests turn it off)

    def _setup_memory(self, list_cache_bytes: int) -> None:
        """What a process keeps besides the connection: caches and the lock guarding them."""
        self._lock = threading.Lock()
        self._schema_ready = False  # set once the schema is known to be current
        # (partition, app_id) -> (sequence_id, serialized state, manifest, raw values) of the branch's last save
        self._last: OrderedDict[tuple[str, str], tuple[int, dict, Manifest, Remembered]] = OrderedDict()
        self.list_cache = ListPrefixCache(list_cache_bytes)  # list items already read (see listcache.py)
        self._claims: OrderedDict[str, str] = OrderedDict()  # partition key -> owner its first save records

    # ---- pickling: another process reconnects from the URL --------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """The URL *with its password* (the new process must log in again), the engine options given to
        `from_url`, cache sizes and whether the schema is known to be current; never the engine or caches."""
        url: URL = self.database.engine.url
        if is_memory_sqlite(url):
            raise TypeError(f"cannot pickle {type(self).__name__} on an in-memory SQLite database: the database "
                            "lives inside this process's connection, so a copy elsewhere would start empty. "
                            "Use a SQLite file or a database server to share a persister between processes.")
        return {"url": url.render_as_string(hide_password=False), "engine_kwargs": self._engine_kwargs,
                "cache_size": self._cache_size, "list_cache_bytes": self.list_cache.max_bytes,
                "schema_ready": self._schema_ready}

    def __setstate__(self, saved: dict[str, Any]) -> None:
        """Reconnects in this process, with empty caches and a fresh lock."""
        self._engine_kwargs = dict(saved["engine_kwargs"])
        self.database = self._connect(saved["url"], dict(self._engine_kwargs))
        self._cache_size = saved["cache_size"]
        self._setup_memory(saved["list_cache_bytes"])
        self._schema_ready = saved["schema_ready"]

    def _connect(self, url: str, engine_kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    # ---- loading and listing ----------------------------------------------------------------------
    def _app_ids(self, conn: Connection, partition_key: str | None) -> list[str]:
        """Branches of a conversation, most recently written first."""
        query = select(App.app_id).where(App.partition_key == storage_key(partition_key)).order_by(App.activity.desc())
        return list(conn.execute(query).scalars())

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

    @staticmethod
    def _persisted(partition_key: str | None, found: tuple | None) -> PersistedStateData | None:
        """What Burr gets from a load; deserializing happens after the connection is given back."""
        if found is None:
            return None
        row, state, needs_serde = found
        return PersistedStateData(
            partition_key=partition_key, app_id=row.app_id, sequence_id=row.sequence_id, position=row.position,
            state=deserialize_state(state, needs_serde), created_at=row.created_at.isoformat(), status=row.status)

    # ---- saving -----------------------------------------------------------------------------------
    def _serialize(self, key: str, app_id: str, state: State) -> tuple[dict, Remembered]:
        with self._lock:
            cached = self._last.get((key, app_id))
        # Reusing the last save's serialized items is right even if another writer moved on since.
        return serialize_state(state, cached[3] if cached else None)

    @contextmanager
    def _saving(self, key: str, app_id: str, sequence_id: int) -> Iterator[None]:
        """Around a save's write: a failed save drops what this process cached of the branch."""
        try:
            yield
        except SnapshotConflictError as exc:
            self.forget(key, app_id)
            raise SnapshotConflictError(_conflict_message(app_id, sequence_id)) from exc
        except StorageError:
            self.forget(key, app_id)
            raise

    def _fast_plan(self, key: str, app_id: str, sequence_id: int, serialized: dict) -> tuple | None:
        """(expected last sequence id, encoded snapshot) when this save can be one statement: PostgreSQL,
        the branch last saved by this process, and no chunk merge (a merge deletes rows first)."""
        if not self.fast_saves or self.database.dialect != "postgresql":
            return None
        with self._lock:
            cached = self._last.get((key, app_id))
        if cached is None or sequence_id <= cached[0]:
            return None
        enc = encode(serialized, sequence_id, cached[1], cached[2])
        before, after = cached[2].lists.get(HISTORY), enc.manifest.lists.get(HISTORY)
        if enc.merged or rewrites(before, after):
            return None  # a merge, or a rewritten history's search rows, deletes rows first
        history = serialized.get(HISTORY)
        rows = rows_to_index(history, before[1]) if after is not None and before and isinstance(history, list) else []
        return (cached[0], enc, rows)

    def _write_fast(self, conn: Connection, plan: tuple, key: str, app_id: str, sequence_id: int, position: str,
                    serialized: dict, status: str) -> Manifest | None:
        """The planned save in one statement; None, with nothing written, if the branch moved meanwhile
        (then the general path decides, under the branch's lock, exactly as without this shortcut)."""
        expected, enc, search_rows = plan
        now = datetime.now(timezone.utc)
        step = step_row(key, app_id, now, serialized, enc.written_bytes, self._owner_of(key))
        saved = fast_save(conn, expected, sequence_id, position, status, now, enc, step, search_rows)
        return None if saved is None else enc.manifest

    def _write(self, conn: Connection, key: str, app_id: str, sequence_id: int, position: str,
               serialized: dict, status: str, forked_from: tuple | None, *, fast: bool = True) -> Manifest:
        plan = self._fast_plan(key, app_id, sequence_id, serialized) if fast else None
        if plan is not None:
            manifest = self._write_fast(conn, plan, key, app_id, sequence_id, position, serialized, status)
            if manifest is not None:
                return manifest
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
        record_step(conn, key, app_id, snapshot_id, now, serialized, stored, self._owner_of(key))
        index_step(conn, key, app_id, (prev_manifest.lists.get(HISTORY) if prev_manifest else None,
                                       enc.manifest.lists.get(HISTORY)),
                   ((previous or {}).get(HISTORY), serialized.get(HISTORY)), forked_from, app is None)
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

    def claim(self, partition_key: str | None, owner: str) -> None:
        """The owner a new conversation gets when its first step is saved in this process. Burr's save()
        carries no user, so the service claims the key before the run starts; an existing conversation
        keeps its owner whatever is claimed (the catalog upsert never changes it)."""
        key = storage_key(partition_key)
        with self._lock:
            self._claims[key] = owner
            self._claims.move_to_end(key)
            while len(self._claims) > CLAIMS_KEPT:
                self._claims.popitem(last=False)

    def _owner_of(self, key: str) -> str:
        with self._lock:
            return self._claims.get(key, LOCAL_OWNER)

    def forget(self, partition_key: str | None, app_id: str | None = None) -> None:
        """Drops cached state (after a conflict or a delete) so the next save re-reads the database."""
        key = storage_key(partition_key)
        with self._lock:
            for cached in [k for k in self._last if k[0] == key and app_id in (None, k[1])]:
                del self._last[cached]
        self.list_cache.forget(key, app_id)


class SQLAlchemyPersister(SnapshotStore, BaseStatePersister):
    """Saves every Burr step; loads any step in O(size of that state).

    Picklable (Burr sends applications to other processes that way): the copy reconnects from the
    URL, password included, so treat a pickled persister like the URL itself. A persister built around
    an engine of your own reconnects with Burrow's default engine settings; one on in-memory SQLite
    cannot be pickled (TypeError).
    """

    def __init__(self, engine: Engine, cache_size: int = 256, list_cache_bytes: int = DEFAULT_MAX_BYTES):
        self.database = Database(engine)
        self._cache_size = cache_size
        self._engine_kwargs: dict[str, Any] = {}
        self._setup_memory(list_cache_bytes)

    @classmethod
    def from_url(cls, url: str, *, list_cache_bytes: int = DEFAULT_MAX_BYTES, **engine_kwargs: Any) -> "SQLAlchemyPersister":
        persister = cls(create_burrow_engine(url, **engine_kwargs), list_cache_bytes=list_cache_bytes)
        persister._engine_kwargs = engine_kwargs
        return persister

    def _connect(self, url: str, engine_kwargs: dict[str, Any]) -> Database:
        return Database(create_burrow_engine(url, **engine_kwargs))

    @property
    def engine(self) -> Engine:
        return self.database.engine

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # ---- schema --------------------------------------------------------------------------------
    def initialize(self) -> None:
        """Creates or upgrades the schema (Alembic, one transaction); safe on every start and from several
        processes at once. A database written by a newer Burrow raises SchemaVersionError, untouched."""
        self.database.guard(lambda: upgrade(self.engine))
        self._schema_ready = True

    def is_initialized(self) -> bool:
        """Burr asks on every application build; once the schema is current, the answer is remembered.
        A database written by a newer Burrow raises SchemaVersionError rather than answer."""
        if not self._schema_ready:
            self._schema_ready = self.database.read(is_current)
        return self._schema_ready

    # ---- Burr's loader contract ---------------------------------------------------------------
    def list_app_ids(self, partition_key: str | None, **kwargs: Any) -> list[str]:
        """Branches of a conversation, most recently written first."""
        return self.database.read(lambda conn: self._app_ids(conn, partition_key))

    def load(
        self, partition_key: str | None, app_id: str | None, sequence_id: int | None = None, **kwargs: Any
    ) -> PersistedStateData | None:
        """The snapshot at `sequence_id` (default: latest) of `app_id` (default: most recent branch)."""
        found = self.database.read(lambda conn: self._load(conn, storage_key(partition_key), app_id, sequence_id))
        return self._persisted(partition_key, found)

    def load_serialized(self, partition_key: str | None, app_id: str | None, sequence_id: int | None = None) -> dict | None:
        """The stored (serialized) state of one snapshot, for viewers that show raw JSON."""
        found = self.database.read(lambda conn: self._load(conn, storage_key(partition_key), app_id, sequence_id))
        return None if found is None else found[1]

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
        serialized, remembered = self._serialize(key, app_id, state)
        with self._saving(key, app_id, sequence_id):
            manifest = self._save_fast(key, app_id, sequence_id, position, serialized, status)
            if manifest is None:  # the general path, in a transaction (fast=False: tried already, or not possible)
                manifest = self.database.write(lambda conn: self._write(
                    conn, key, app_id, sequence_id, position, serialized, status, kwargs.get("forked_from"),
                    fast=False))
        self._remember(key, app_id, sequence_id, serialized, manifest, remembered)

    def _save_fast(self, key: str, app_id: str, sequence_id: int, position: str, serialized: dict,
                   status: str) -> Manifest | None:
        """The one-statement save outside a transaction (it is atomic by itself), when it applies."""
        plan = self._fast_plan(key, app_id, sequence_id, serialized)
        if plan is None:
            return None
        return self.database.write_one(
            lambda conn: self._write_fast(conn, plan, key, app_id, sequence_id, position, serialized, status))

    def schema_tables(self) -> list[str]:
        return self.database.guard(lambda: inspect(self.engine).get_table_names())


HISTORY = "chat_history"  # the list whose messages are indexed for search


class _Loaded:
    __slots__ = ("app_id", "sequence_id", "position", "status", "created_at")

    def __init__(self, app_id: str, sequence_id: int, position: str, status: str, created_at: datetime):
        self.app_id, self.sequence_id, self.position, self.status = app_id, sequence_id, position, status
        self.created_at = as_utc(created_at)


def _conflict_message(app_id: str, sequence_id: int) -> str:
    return (f"Step {sequence_id} of branch {app_id} was already saved by another writer "
            "(another tab or server). Reload the conversation to continue from its latest state.")
