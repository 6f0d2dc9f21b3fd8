"""The four persisters under test, behind one small interface: open, measure stored bytes, list.

- Burrow's `SQLAlchemyPersister` on SQLite and on PostgreSQL (its own engine settings: WAL etc.).
- Burr's `SQLitePersister` (burr.core.persistence) with a default `sqlite3` connection, and
  Burr's `PostgreSQLPersister` (burr.integrations.persisters.b_psycopg2), as their docs set them up.
Each target owns its own database (a file, or a database created on the PostgreSQL server).
"""
from __future__ import annotations

import os
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from burr.core.persistence import BaseStatePersister, SQLitePersister
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url

from core.storage import ConversationStore
from core.storage import SQLAlchemyPersister
from core.storage.schema import TABLES

BURR_PARTITION = "bench-user"  # Burr lists one user's conversations as the app_ids of a partition


class Target:
    """One persister on its own database. Subclasses fill in the database specifics."""

    label = ""
    backend = ""
    ours = False

    def persister(self) -> BaseStatePersister:
        raise NotImplementedError

    def stored_bytes(self) -> int:
        """Bytes on disk after VACUUM (SQLite: file size; PostgreSQL: VACUUM FULL, relation sizes)."""
        raise NotImplementedError

    @property
    def label_id(self) -> str:
        return f"{self.label} ({self.backend})"

    def list_rows(self, limit: int) -> list[str]:
        """What each project's listing call returns when asked for the newest `limit` conversations.

        Burrow: `ConversationStore.list(limit=...)` (a page). Burr has no paging: `list_app_ids`
        returns every row, and the caller keeps the first `limit`.
        """
        raise NotImplementedError

    def conversation_key(self, index: int) -> tuple[str, str]:
        """(partition_key, app_id) of seeded conversation `index`: Burrow keys by partition, Burr by app_id."""
        if self.ours:
            return f"conv-{index:05d}", "main"
        return BURR_PARTITION, f"conv-{index:05d}"

    def drop_caches(self) -> None:
        """Empties what the persister itself keeps of earlier reads (Burr's persisters keep nothing)."""

    def close(self) -> None:
        pass


class BurrowTarget(Target):
    """Burrow's persister on one database URL (the subclasses say which and how to measure it)."""

    label, ours = "Burrow SQLAlchemyPersister", True

    def __init__(self, url: str, **engine_options: Any):
        self._persister = SQLAlchemyPersister.from_url(url, **engine_options)
        self._persister.initialize()
        self.store = ConversationStore(self._persister)

    def persister(self) -> SQLAlchemyPersister:
        return self._persister

    def drop_caches(self) -> None:
        self._persister.list_cache.clear()

    def list_rows(self, limit: int) -> list[str]:
        return [c.partition_key for c in self.store.list(limit=limit)]

    def close(self) -> None:
        self._persister.engine.dispose()


# ---- SQLite --------------------------------------------------------------------------------------
class OursSQLite(BurrowTarget):
    backend = "SQLite"

    def __init__(self, path: Path):
        self.path = path
        super().__init__(f"sqlite:///{path}")

    def stored_bytes(self) -> int:
        self.store.vacuum()
        return sum(os.path.getsize(p) for p in (self.path, Path(f"{self.path}-wal")) if p.exists())


class BurrSQLite(Target):
    label, backend = "Burr SQLitePersister", "SQLite"

    def __init__(self, path: Path, fast_writes: bool = False):
        self.path = path
        connection = sqlite3.connect(path, check_same_thread=False)
        if fast_writes:  # only for seeding the listing database, never for timed saves
            connection.execute("PRAGMA synchronous=OFF")
        self._persister = SQLitePersister(str(path), connection=connection)
        self._persister.initialize()

    def persister(self) -> SQLitePersister:
        return self._persister

    def stored_bytes(self) -> int:
        self._persister.connection.execute("VACUUM")
        return os.path.getsize(self.path)

    def list_rows(self, limit: int) -> list[str]:
        return self._persister.list_app_ids(BURR_PARTITION)

    def close(self) -> None:
        self._persister.connection.close()


# ---- PostgreSQL -----------------------------------------------------------------------------------
class PostgresDatabase:
    """A database created for one target on the benchmark's server, dropped on close."""

    def __init__(self, server_url: str, tag: str):
        self.server = make_url(server_url)
        self.name = f"burrow_bench_{tag}_{uuid.uuid4().hex[:8]}"
        self._admin(f'CREATE DATABASE "{self.name}"')
        self.url: URL = self.server.set(database=self.name)

    def _admin(self, sql: str) -> None:
        engine = create_engine(self.server, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(sql))
        engine.dispose()

    def vacuum_full_size(self, tables: list[str]) -> int:
        engine = create_engine(self.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for table in tables:
                conn.execute(text(f'VACUUM FULL "{table}"'))
            sizes = [conn.execute(text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar_one() for t in tables]
        engine.dispose()
        return sum(sizes)

    def drop(self) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


class OursPostgres(BurrowTarget):
    backend = "PostgreSQL"

    def __init__(self, server_url: str, tag: str, fast_writes: bool = False):
        self.db = PostgresDatabase(server_url, tag)
        options = {"connect_args": {"options": "-c synchronous_commit=off"}} if fast_writes else {}
        super().__init__(self.db.url.render_as_string(hide_password=False), **options)

    def stored_bytes(self) -> int:
        return self.db.vacuum_full_size([t.name for t in TABLES])

    def close(self) -> None:
        super().close()
        self.db.drop()


class BurrPostgres(Target):
    label, backend = "Burr PostgreSQLPersister", "PostgreSQL"

    def __init__(self, server_url: str, tag: str, fast_writes: bool = False):
        import psycopg2  # Burr's PostgreSQL persister is written for psycopg2
        from burr.integrations.persisters.b_psycopg2 import PostgreSQLPersister

        self.db = PostgresDatabase(server_url, tag)
        url = self.db.url
        self.connection: Any = psycopg2.connect(
            dbname=url.database, user=url.username, password=url.password or "", host=url.host, port=url.port,
            options="-c synchronous_commit=off" if fast_writes else None)
        self._persister = PostgreSQLPersister(self.connection)
        self._persister.initialize()

    def persister(self) -> BaseStatePersister:
        return self._persister

    def stored_bytes(self) -> int:
        return self.db.vacuum_full_size([self._persister.table_name])

    def list_rows(self, limit: int) -> list[str]:
        return self._persister.list_app_ids(BURR_PARTITION)

    def close(self) -> None:
        self.connection.close()
        self.db.drop()
