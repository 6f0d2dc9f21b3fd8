"""Burrow's schema migrations: Alembic revisions in versions/, applied by `upgrade(engine)` at every start.

Alembic is driven from code (no alembic.ini): `alembic_config()` points `script_location` at this
folder and hands Alembic our connection through `config.attributes`, so the whole upgrade runs in
ONE transaction that we begin and lock first (PostgreSQL: an advisory lock; SQLite: BEGIN
IMMEDIATE). Several processes starting at once queue on it; an interrupted upgrade leaves the
database as it was. Both databases run DDL transactionally.

The revision a database is at lives in `burrow_alembic_version` (Alembic's version table, with
Burrow's prefix like every other table, so a database shared with another Alembic app is fine).
Databases from before Alembic recorded versions 1..3 in `burrow_migrations`: they are *stamped*
at the matching revision (no row of theirs is touched) and then upgraded. That table is left as it
was and never written again; a release from before Alembic can still open the database while its
schema is 0003 (see docs/storage.md for what the next schema change must do about it).

A database at a revision this release does not know (or with a legacy version above 3) was
written by a newer Burrow: it is refused with `SchemaVersionError` before anything is written.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

from core.errors import SchemaVersionError, StorageError

HERE = Path(__file__).resolve().parent
VERSION_TABLE = "burrow_alembic_version"
LEGACY_TABLE = "burrow_migrations"
LEGACY_REVISIONS = {1: "0001", 2: "0002", 3: "0003"}  # burrow_migrations version -> the same schema here
ADVISORY_LOCK_KEY = 0x62757272  # "burr"; any constant shared by every Burrow process
# Alembic keeps `context` and `op` in module globals, so one process runs one Alembic command at a
# time (two threads upgrading two databases would otherwise see each other's). Re-entrant, so that
# greenlets sharing a thread (the async persister) can never deadlock on it.
_ALEMBIC = threading.RLock()

__all__ = ["HEAD", "SchemaStatus", "alembic_config", "head", "is_current", "print_sql", "revisions", "schema_status",
           "stamp_legacy", "upgrade"]


def alembic_config(*, connection: Connection | None = None, url: str | None = None,
                   output: TextIO | None = None) -> Config:
    """Alembic's settings, built in code. Values go through `attributes`, never the ini parser
    (which would read a '%' in a password as interpolation)."""
    config = Config(output_buffer=output)
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")  # versions/0004_some_change.py
    config.attributes.update(connection=connection, url=url, version_table=VERSION_TABLE)
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this release knows."""
    return _scripts().get_current_head()


@functools.cache
def revisions() -> tuple[str, ...]:
    """Every revision this release knows, oldest first."""
    return tuple(reversed([script.revision for script in _scripts().walk_revisions()]))


def _known() -> frozenset[str]:
    return frozenset(revisions())


HEAD = head()


@dataclasses.dataclass(frozen=True)
class SchemaStatus:
    """Where a database is: `revision` None for a blank one; `stamped` False while the revision is
    only known from the legacy `burrow_migrations` table."""

    revision: str | None
    stamped: bool

    @property
    def current(self) -> bool:
        return self.stamped and self.revision == HEAD


def newer_database(found: str) -> SchemaVersionError:
    return SchemaVersionError(
        f"This database was written by a newer Burrow (schema {found}); this release knows schema up to "
        f"{HEAD}. Upgrade Burrow, or point BURROW_DATABASE_URL at another database.")


def schema_status(conn: Connection) -> SchemaStatus:
    """Reads the database's revision; raises SchemaVersionError if a newer Burrow wrote it."""
    tables = set(inspect(conn).get_table_names())
    legacy = _legacy_revision(conn) if LEGACY_TABLE in tables else None
    if VERSION_TABLE not in tables:
        return SchemaStatus(legacy, stamped=False)
    found = list(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars())
    for revision in found:
        if revision not in _known():
            raise newer_database(revision)
    if len(found) > 1:  # Burrow's history is one line; several heads mean someone else's revisions
        raise StorageError(f"{VERSION_TABLE} holds several revisions ({', '.join(sorted(found))}); "
                           "this is not a database Burrow created")
    return SchemaStatus(found[0] if found else None, stamped=True)


def _legacy_revision(conn: Connection) -> str | None:
    version = conn.execute(text(f"SELECT max(version) FROM {LEGACY_TABLE}")).scalar()
    if version is None:
        return None
    if version not in LEGACY_REVISIONS:  # no release after 3 wrote there: a newer (or foreign) Burrow did
        raise newer_database(f"version {version} in {LEGACY_TABLE}")
    return LEGACY_REVISIONS[version]


def is_current(conn: Connection) -> bool:
    """True once the database is at this release's head (a newer one raises SchemaVersionError)."""
    return schema_status(conn).current


@contextlib.contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """One write transaction that every other Burrow process's schema work waits for."""
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():  # SQLite: BEGIN IMMEDIATE
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        yield conn


def _stamp_legacy(config: Config, status: SchemaStatus) -> None:
    if status.revision is not None and not status.stamped:
        command.stamp(config, status.revision)  # a pre-Alembic database: record where it is, touch no row


def upgrade(engine: Engine) -> list[str]:
    """Brings the database to head in one locked transaction; returns the revisions that ran.

    The version is read after taking the lock, so a process that waited sees what the one before
    it did and runs nothing. A newer database is refused before anything is written.
    """
    with _locked(engine) as conn:
        status = schema_status(conn)
        if status.current:
            return []
        config = alembic_config(connection=conn)
        with _ALEMBIC:
            _stamp_legacy(config, status)
            command.upgrade(config, "head")
        return list(config.attributes.get("applied", []))


def stamp_legacy(engine: Engine) -> str | None:
    """Records a pre-Alembic database's revision in the version table, changing nothing else, so the
    SQL of the rest of its upgrade can be printed (`sql --from`) and reviewed. Returns the revision."""
    with _locked(engine) as conn:
        status = schema_status(conn)
        with _ALEMBIC:
            _stamp_legacy(alembic_config(connection=conn), status)
        return status.revision


def print_sql(url: str, start: str | None = None, end: str = "head", output: TextIO | None = None) -> None:
    """Writes the SQL of an upgrade from `start` (None: a blank database) to `end` for `url`'s dialect,
    in Alembic's offline mode: nothing is connected to."""
    for revision in (start, end):
        if revision not in (None, "head") and revision not in _known():
            raise SchemaVersionError(f"unknown schema revision {revision!r}; this release knows {sorted(_known())}")
    with _ALEMBIC:
        command.upgrade(alembic_config(url=url, output=output), f"{start}:{end}" if start else end, sql=True)
