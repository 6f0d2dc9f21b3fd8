"""The database connection: engine settings per dialect, the one read and one write transaction helper
every storage module uses, and the translation of driver errors into Burrow's error types.

Reads run without BEGIN/COMMIT round trips (SQLite: no BEGIN; PostgreSQL: autocommit): each
statement sees committed rows, and every read Burrow makes is one statement or tolerates rows
appearing between statements (snapshot rows are only ever added; a merge rewrites chunks into
equal items). Writes take SQLite's lock up front (BEGIN IMMEDIATE), so two writers queue instead
of failing with "database is locked". `write_one` is for a write that is one statement, atomic by
itself (the persister's usual save on PostgreSQL): no transaction around it, same error translation.

`AsyncDatabase` is the same for SQLAlchemy's asyncio engine: it runs the same sync `work(conn)` through
`AsyncConnection.run_sync`, on an engine with the same settings, so both persisters share one code path.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.util import greenlet_spawn

from core.errors import SnapshotConflictError, StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")
SQLITE_BUSY_TIMEOUT = 15.0  # seconds; the driver's `timeout` sets SQLite's busy_timeout
PSYCOPG_DRIVERS = ("psycopg", "psycopg_async")  # psycopg 3, sync and asyncio (psycopg2 has no binary results)
ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "psycopg"}  # what `async_url` picks for a bare URL

_HINTS = (  # what to check, for the errors people actually meet
    ("readonly", " (check that the database file and its folder are writable)"),
    ("unable to open database file", " (check that the folder exists and is writable)"),
    ("database is locked", " (another program is writing to it; try again, or raise ?timeout= in BURROW_DATABASE_URL)"),
    ("connection refused", " (check that the database server is running and BURROW_DATABASE_URL points at it)"),
    ("disk is full", " (free some disk space; nothing was half-written)"),
    ("no space left", " (free some disk space; nothing was half-written)"),
    ("permission denied", " (grant the database user of BURROW_DATABASE_URL access to Burrow's tables)"),
)


def is_memory_sqlite(url: URL) -> bool:
    """`sqlite://`, `sqlite:///:memory:` and `mode=memory` URIs: a database that lives in one connection."""
    return url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or url.query.get("mode") == "memory")


def create_burrow_engine(url: str | URL, **engine_kwargs: Any) -> Engine:
    """An engine with Burrow's connection settings (SQLite: WAL, busy timeout, immediate writes).

    An in-memory SQLite database exists only inside the connection that made it, so it gets one
    connection shared by every thread (and `Database` serializes their use of it).
    """
    url = make_url(url)
    engine = create_engine(url, **_engine_options(url, engine_kwargs))
    _configure(engine, url)
    return engine


def async_url(url: str | URL) -> URL:
    """The same database through an asyncio driver: a bare `sqlite://` or `sqlite+pysqlite://` gets
    aiosqlite and a bare `postgresql://` gets psycopg 3 (whose URL serves sync and async alike)."""
    url = make_url(url)
    backend = url.get_backend_name()
    if backend in ASYNC_DRIVERS and url.drivername in (backend, "sqlite+pysqlite"):
        return url.set(drivername=f"{backend}+{ASYNC_DRIVERS[backend]}")
    return url


def create_burrow_async_engine(url: str | URL, **engine_kwargs: Any) -> AsyncEngine:
    """`create_burrow_engine` for SQLAlchemy's asyncio extension: the same pragmas, BEGIN IMMEDIATE for
    writes and psycopg binary results (events live on the async engine's sync facade)."""
    url = async_url(url)
    engine = create_async_engine(url, **_engine_options(url, engine_kwargs))
    _configure(engine.sync_engine, url)
    return engine


def _engine_options(url: URL, engine_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The caller's engine options plus Burrow's defaults (the caller's dicts are copied, never changed)."""
    options = dict(engine_kwargs)
    if url.get_backend_name() == "sqlite":
        connect_args = options["connect_args"] = dict(options.get("connect_args") or {})
        if "timeout" not in url.query:  # `?timeout=N` in the URL sets how long a write waits for a lock
            connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT)
        if is_memory_sqlite(url):
            connect_args.setdefault("check_same_thread", False)
            options.setdefault("poolclass", StaticPool)
    else:
        options.setdefault("pool_pre_ping", True)
    return options


def _configure(engine: Engine, url: URL) -> None:
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, memory=is_memory_sqlite(url))
    if engine.dialect.driver in PSYCOPG_DRIVERS:
        _binary_results_on_request(engine)


def _binary_results_on_request(engine: Engine) -> None:
    """Statements marked `burrow_binary_results` get psycopg 3's binary result format: bytea then
    arrives as is, where the text format would send (and make the client decode) twice the bytes in hex."""
    from psycopg.pq import Format
    from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_cursor

    @event.listens_for(engine, "before_cursor_execute")
    def _binary(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if context is not None and context.execution_options.get("burrow_binary_results"):
            # asyncio: SQLAlchemy's adapter wraps psycopg's AsyncCursor, which is what fetches rows
            raw = cursor._cursor if isinstance(cursor, AsyncAdapt_dbapi_cursor) else cursor
            raw.format = Format.BINARY


def _pragma(cursor: Any, pragma: str, patience: float = SQLITE_BUSY_TIMEOUT) -> None:
    """Runs one PRAGMA, waiting out a busy database: SQLite answers `journal_mode=WAL` on a new file with
    "database is locked" at once, without its busy timeout, while another connection switches the mode
    (several servers starting on one fresh file)."""
    deadline = time.monotonic() + patience
    while True:
        try:
            cursor.execute(f"PRAGMA {pragma}")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _configure_sqlite(engine: Engine, memory: bool) -> None:
    pragmas = ("synchronous=NORMAL", "foreign_keys=ON") if memory else (
        "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001 - DB-API objects
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            _pragma(cursor, pragma)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get("sqlite_single_read"):  # reads whose SELECTs need no common snapshot: no BEGIN/COMMIT
            return
        conn.exec_driver_sql("BEGIN IMMEDIATE" if options.get("sqlite_immediate") else "BEGIN")


def describe_error(exc: BaseException, where: str) -> str:
    """A one-line, user-facing explanation that never includes the password."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    reason = lines[0] if lines else type(cause).__name__
    hint = next((hint for marker, hint in _HINTS if marker in reason.lower()), "")
    # A server that answers but refuses the statement (no permission, a missing table) is not "down".
    what = "refused a request" if isinstance(exc, (ProgrammingError, DataError)) else "is not available"
    return f"The database at {where} {what}: {reason}{hint}"


class Database:
    """One engine and the two ways Burrow uses it: `read(work)` and `write(work)`.

    Both call `work(conn)` with an open connection and turn driver errors into `StorageError`
    (a unique-key violation in a write into `SnapshotConflictError`), with a message that says what
    to check and never the password. On in-memory SQLite (one shared connection) everything that
    goes through `guard` is serialized by one lock.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.where = _where(engine.url)
        # A shared in-memory connection must not run two threads' statements interleaved.
        self._serial = threading.RLock() if is_memory_sqlite(engine.url) else None
        self._reader = engine.execution_options(**_read_options(self.dialect))
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    def _exclusive(self) -> Any:
        return self._serial if self._serial is not None else nullcontext()

    def read(self, work: Callable[[Connection], T], settings: Mapping[str, str] | None = None) -> T:
        """Runs `work(conn)` as a read. PostgreSQL `settings` (planner settings such as jit) hold for this
        read alone: it then runs in a transaction of its own that sets them locally (SQLite has none)."""
        def run() -> T:
            if settings and self.dialect == "postgresql":
                with self.engine.connect() as conn, conn.begin():
                    conn.execute(*_set_locally(settings))
                    return work(conn)
            with self._reader.connect() as conn:
                return _in_transaction(conn, work)

        return self.guard(run)

    def write(self, work: Callable[[Connection], T]) -> T:
        """Runs `work(conn)` in one write transaction.

        A SQLite file opened while it was read-only stays read-only for every pooled connection (they
        share the file handle), even once it is writable again: then the pool is closed and the write
        tried once more on fresh connections, so fixing the file needs no restart.
        """
        def attempt() -> T:
            with self.engine.connect().execution_options(sqlite_immediate=True) as conn:
                return _in_transaction(conn, work)

        def run() -> T:
            try:
                return attempt()
            except OperationalError as exc:
                if not _retry_fresh(exc, self._serial is not None):
                    raise
                self.engine.dispose()
            return attempt()

        return self.guard(run)

    def write_one(self, work: Callable[[Connection], T]) -> T:
        """Runs `work(conn)` whose writes are a single statement, atomic by itself, on an autocommit
        connection (PostgreSQL): SQLAlchemy's begin and commit still frame it, but send nothing, so
        BEGIN and COMMIT cost no round trips of their own."""
        def run() -> T:
            with self._autocommit.connect() as conn:
                return _in_transaction(conn, work)

        return self.guard(run)

    def guard(self, work: Callable[[], T]) -> T:
        """Runs database work, turning driver errors into Burrow's errors with a readable message."""
        try:
            with self._exclusive():
                return work()
        except SQLAlchemyError as exc:
            raise _translated(exc, self.where) from exc

    def dispose(self) -> None:
        self.engine.dispose()


class AsyncDatabase:
    """`Database` on SQLAlchemy's asyncio engine: `await read(work)` and `await write(work)` run the
    same sync `work(conn)` through `run_sync` (a greenlet on the event loop's thread, no worker thread),
    with the same transactions, read-only retry and error translation."""

    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.where = _where(engine.url)
        # Coroutines share one thread, so only an asyncio lock keeps a shared in-memory connection's users apart.
        self._serial = asyncio.Lock() if is_memory_sqlite(engine.url) else None
        self._reader = engine.execution_options(**_read_options(self.dialect))

    def _exclusive(self) -> Any:
        return self._serial if self._serial is not None else nullcontext()

    async def read(self, work: Callable[[Connection], T]) -> T:
        async def run() -> T:
            async with self._reader.connect() as conn:
                return await conn.run_sync(_in_transaction, work)

        return await self.guard(run)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Runs `work(conn)` in one write transaction (see `Database.write` for the retry)."""
        async def attempt() -> T:
            async with self.engine.connect() as conn:
                await conn.execution_options(sqlite_immediate=True)
                return await conn.run_sync(_in_transaction, work)

        async def run() -> T:
            try:
                return await attempt()
            except OperationalError as exc:
                if not _retry_fresh(exc, self._serial is not None):
                    raise
                await self.engine.dispose()
            return await attempt()

        return await self.guard(run)

    async def with_sync_engine(self, work: Callable[[Engine], T]) -> T:
        """Runs sync code that wants an Engine (the migrations) on the async engine's sync facade."""
        return await self.guard(lambda: greenlet_spawn(work, self.engine.sync_engine))

    async def guard(self, work: Callable[[], Awaitable[T]]) -> T:
        try:
            async with self._exclusive():
                return await work()
        except SQLAlchemyError as exc:
            raise _translated(exc, self.where) from exc

    async def dispose(self) -> None:
        await self.engine.dispose()


def _read_options(dialect: str) -> dict[str, Any]:
    return {"sqlite_single_read": True} if dialect == "sqlite" else {"isolation_level": "AUTOCOMMIT"}


def _set_locally(settings: Mapping[str, str]) -> tuple[Any, dict[str, str]]:
    """One statement that sets each setting for the current transaction only (SET LOCAL)."""
    calls = ", ".join(f"set_config(:k{i}, :v{i}, true)" for i in range(len(settings)))
    values = {f"{kind}{i}": value for i, pair in enumerate(settings.items()) for kind, value in zip("kv", pair)}
    return text(f"SELECT {calls}"), values


def _in_transaction(conn: Connection, work: Callable[[Connection], T]) -> T:
    with conn.begin():
        return work(conn)


def _retry_fresh(exc: OperationalError, memory: bool) -> bool:
    """A write refused because the pooled SQLite handles are read-only (never on in-memory SQLite,
    where closing the pool would drop the database)."""
    return not memory and getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY


def _translated(exc: SQLAlchemyError, where: str) -> StorageError:
    if isinstance(exc, IntegrityError):
        return SnapshotConflictError(f"Another writer saved the same rows first: {_first_line(exc)}")
    return StorageError(describe_error(exc, where))


def _where(url: URL) -> str:
    """Where the database is, for messages: host and database, never the user's password."""
    return url.render_as_string(hide_password=True).split("@")[-1]


def _first_line(exc: SQLAlchemyError) -> str:
    lines = str(getattr(exc, "orig", exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
