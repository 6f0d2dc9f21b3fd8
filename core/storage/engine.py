"""The database connection: engine settings per dialect, the one read and one write transaction helper
every storage module uses, and the translation of driver errors into Burrow's error types.

Reads run without BEGIN/COMMIT round trips (SQLite: no BEGIN; PostgreSQL: autocommit): each
statement sees committed rows, and every read Burrow makes is one statement or tolerates rows
appearing between statements (snapshot rows are only ever added; a merge rewrites chunks into
equal items). Writes take SQLite's lock up front (BEGIN IMMEDIATE), so two writers queue instead
of failing with "database is locked".
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from core.errors import SnapshotConflictError, StorageError

log = logging.getLogger(__name__)
T = TypeVar("T")
SQLITE_BUSY_TIMEOUT = 15.0  # seconds; the driver's `timeout` sets SQLite's busy_timeout

_HINTS = (  # what to check, for the errors people actually meet
    ("readonly", " (check that the database file and its folder are writable)"),
    ("unable to open database file", " (check that the folder exists and is writable)"),
    ("database is locked", " (another program is writing to it; try again, or raise ?timeout= in BURROW_DATABASE_URL)"),
    ("connection refused", " (check that the database server is running and BURROW_DATABASE_URL points at it)"),
    ("disk is full", " (free some disk space; nothing was half-written)"),
    ("no space left", " (free some disk space; nothing was half-written)"),
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
    if url.get_backend_name() == "sqlite":
        connect_args = engine_kwargs.setdefault("connect_args", {})
        if "timeout" not in url.query:  # `?timeout=N` in the URL sets how long a write waits for a lock
            connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT)
        if is_memory_sqlite(url):
            connect_args.setdefault("check_same_thread", False)
            engine_kwargs.setdefault("poolclass", StaticPool)
    else:
        engine_kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, **engine_kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, memory=is_memory_sqlite(url))
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


def _configure_sqlite(engine: Engine, memory: bool) -> None:
    pragmas = ("synchronous=NORMAL", "foreign_keys=ON") if memory else (
        "journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001 - DB-API objects
        dbapi_connection.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
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
    return f"The database at {where} is not available: {reason}{hint}"


class Database:
    """One engine and the two ways Burrow uses it: `read(work)` and `write(work)`.

    Both call `work(conn)` with an open connection and turn driver errors into `StorageError`
    (a unique-key violation in a write into `SnapshotConflictError`), with a message that says what
    to check and never the password.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self.dialect = engine.dialect.name
        self.where = _where(engine.url)
        # A shared in-memory connection must not run two threads' statements interleaved.
        self._serial = threading.RLock() if is_memory_sqlite(engine.url) else None
        self._reader = engine.execution_options(
            **({"sqlite_single_read": True} if self.dialect == "sqlite" else {"isolation_level": "AUTOCOMMIT"}))

    def _exclusive(self) -> Any:
        return self._serial if self._serial is not None else nullcontext()

    def read(self, work: Callable[[Connection], T]) -> T:
        def run() -> T:
            with self._exclusive(), self._reader.connect() as conn, conn.begin():
                return work(conn)

        return self.guard(run)

    def write(self, work: Callable[[Connection], T]) -> T:
        """Runs `work(conn)` in one write transaction.

        A SQLite file opened while it was read-only stays read-only for every pooled connection (they
        share the file handle), even once it is writable again: then the pool is closed and the write
        tried once more on fresh connections, so fixing the file needs no restart.
        """
        def attempt() -> T:
            with self._exclusive(), self.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
                return work(conn)

        def run() -> T:
            try:
                return attempt()
            except OperationalError as exc:
                if getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_READONLY:
                    raise
                self.engine.dispose()
            return attempt()

        return self.guard(run)

    def guard(self, work: Callable[[], T]) -> T:
        """Runs database work, turning driver errors into Burrow's errors with a readable message."""
        try:
            return work()
        except IntegrityError as exc:
            raise SnapshotConflictError(f"Another writer saved the same rows first: {_first_line(exc)}") from exc
        except SQLAlchemyError as exc:
            raise StorageError(describe_error(exc, self.where)) from exc

    def dispose(self) -> None:
        self.engine.dispose()


def _where(url: URL) -> str:
    """Where the database is, for messages: host and database, never the user's password."""
    return url.render_as_string(hide_password=True).split("@")[-1]


def _first_line(exc: SQLAlchemyError) -> str:
    lines = str(getattr(exc, "orig", exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
