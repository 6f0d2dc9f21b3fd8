"""`AsyncSQLAlchemyPersister`: the async twin of `SQLAlchemyPersister`, for async Burr applications
(`abuild`, `astep`, `astream_result`, a FastAPI server).

Same tables, same format, same code: the work of a load, a save and a listing is `SnapshotStore`'s
(persister.py), run on SQLAlchemy's asyncio engine through `AsyncDatabase` (engine.py), which calls
it with a sync Connection facade inside `run_sync`. So a database written by one persister is read
by the other, and a change to the format is made once.

URLs: `sqlite+aiosqlite:///path.db` or `postgresql+psycopg://...` (psycopg 3 serves both); a bare
`sqlite://` or `postgresql://` URL is given those drivers, so one BURROW_DATABASE_URL serves both.
"""
from __future__ import annotations

from typing import Any, Literal

from burr.core import State
from burr.core.persistence import AsyncBaseStatePersister, PersistedStateData
from sqlalchemy.ext.asyncio import AsyncEngine

from core.storage.catalog import storage_key
from core.storage.engine import AsyncDatabase, create_burrow_async_engine
from core.storage.listcache import DEFAULT_MAX_BYTES
from core.storage.persister import SnapshotStore, SQLAlchemyPersister


class AsyncSQLAlchemyPersister(SnapshotStore, AsyncBaseStatePersister):
    """Saves every Burr step of an async application; loads any step in O(size of that state).

    Close it with `await cleanup()` or use it as `async with`: an engine left to the garbage collector
    may outlive its event loop. Picklable like the sync persister (the URL, password included).
    """

    def __init__(self, engine: AsyncEngine, cache_size: int = 256, list_cache_bytes: int = DEFAULT_MAX_BYTES):
        self.database = AsyncDatabase(engine)
        self._cache_size = cache_size
        self._engine_kwargs: dict[str, Any] = {}
        self._setup_memory(list_cache_bytes)

    @classmethod
    def from_url(cls, url: str, *, list_cache_bytes: int = DEFAULT_MAX_BYTES,
                 **engine_kwargs: Any) -> "AsyncSQLAlchemyPersister":
        """Making the engine connects to nothing yet, so unlike Burr's async persisters this needs no await."""
        persister = cls(create_burrow_async_engine(url, **engine_kwargs), list_cache_bytes=list_cache_bytes)
        persister._engine_kwargs = engine_kwargs
        return persister

    def _connect(self, url: str, engine_kwargs: dict[str, Any]) -> AsyncDatabase:
        return AsyncDatabase(create_burrow_async_engine(url, **engine_kwargs))

    @property
    def engine(self) -> AsyncEngine:
        return self.database.engine

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    # ---- schema --------------------------------------------------------------------------------
    # The sync persister's own schema methods, run on the async engine's sync facade: the migrations
    # and the version check exist once, whatever they become.
    async def initialize(self) -> None:
        """Creates or upgrades the schema; safe on every start and from several processes at once."""
        await self.database.with_sync_engine(lambda engine: SQLAlchemyPersister(engine).initialize())
        self._schema_ready = True

    async def is_initialized(self) -> bool:
        """Burr asks on every application build; once the schema is current, the answer is remembered."""
        if not self._schema_ready:
            self._schema_ready = await self.database.with_sync_engine(
                lambda engine: SQLAlchemyPersister(engine).is_initialized())
        return self._schema_ready

    # ---- Burr's loader contract ---------------------------------------------------------------
    async def list_app_ids(self, partition_key: str | None, **kwargs: Any) -> list[str]:
        """Branches of a conversation, most recently written first."""
        return await self.database.read(lambda conn: self._app_ids(conn, partition_key))

    async def load(
        self, partition_key: str | None, app_id: str | None, sequence_id: int | None = None, **kwargs: Any
    ) -> PersistedStateData | None:
        """The snapshot at `sequence_id` (default: latest) of `app_id` (default: most recent branch)."""
        found = await self.database.read(lambda conn: self._load(conn, storage_key(partition_key), app_id, sequence_id))
        return self._persisted(partition_key, found)

    async def load_serialized(self, partition_key: str | None, app_id: str | None,
                              sequence_id: int | None = None) -> dict | None:
        found = await self.database.read(lambda conn: self._load(conn, storage_key(partition_key), app_id, sequence_id))
        return None if found is None else found[1]

    # ---- Burr's saver contract ----------------------------------------------------------------
    async def save(
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
            manifest = await self.database.write(
                lambda conn: self._write(conn, key, app_id, sequence_id, position, serialized, status, kwargs.get("forked_from")))
        self._remember(key, app_id, sequence_id, serialized, manifest, remembered)

    # ---- closing ----------------------------------------------------------------------------------
    async def cleanup(self) -> None:
        """Closes the engine's connections (Burr's async persisters call this `cleanup`)."""
        await self.database.dispose()

    async def close(self) -> None:
        await self.cleanup()

    async def __aenter__(self) -> "AsyncSQLAlchemyPersister":
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.cleanup()
