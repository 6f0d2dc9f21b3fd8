"""Numbered schema migrations, registered in order here and applied by `SQLAlchemyPersister.initialize()`.

Each migration runs inside one transaction together with its record in `burrow_migrations`, so an
interrupted upgrade leaves the database as it was. Concurrent starts (several app servers on one
PostgreSQL) serialize on an advisory lock; on SQLite the write transaction itself serializes them.
To change the schema: add a function, register it in MIGRATIONS, never edit an applied one.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger, Boolean, Column, Connection, DateTime, Engine, Integer, LargeBinary, MetaData, String, Table, Text,
    UniqueConstraint, func, inspect, select, text, update,
)

from core.storage.schema import App, Conversation, ListItem, Migration, Snapshot, StateValue
from core.storage.rows import insert_app, insert_snapshot
from core.storage.codec import Manifest, encode

ADVISORY_LOCK_KEY = 0x62757272  # "burr"; any constant shared by every Burrow process

# ---- version 1: the first released format, one full JSON state per snapshot --------------------
_v1 = MetaData()
V1_SNAPSHOTS = Table(
    "burrow_snapshots", _v1,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("partition_key", String(255), nullable=False),
    Column("app_id", String(255), nullable=False),
    Column("sequence_id", Integer, nullable=False),
    Column("position", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("state_json", Text, nullable=False),
    UniqueConstraint("partition_key", "app_id", "sequence_id", name="uq_burrow_snapshots_v1_step"),
)
V1_CONVERSATIONS = Table(
    "burrow_conversations", _v1,
    Column("partition_key", String(255), primary_key=True),
    Column("title", Text),
    Column("title_custom", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("activity", BigInteger, nullable=False),
    Column("message_count", Integer, nullable=False, default=0),
    Column("latest_app_id", String(255), nullable=False),
)


def m001_full_snapshots(conn: Connection) -> None:
    _v1.create_all(conn)
    conn.execute(text("CREATE INDEX ix_burrow_conversations_activity ON burrow_conversations (activity)"))


# ---- version 2: delta snapshots (only what changed), branch table, per-conversation size -------
def m002_delta_snapshots(conn: Connection) -> None:
    """Rewrites every v1 snapshot into the delta format; each branch's states stay exactly equal."""
    conn.execute(text("ALTER TABLE burrow_snapshots RENAME TO burrow_snapshots_v1"))
    for table in (App.__table__, Snapshot.__table__, StateValue.__table__, ListItem.__table__):
        table.create(conn)
    _fast_toast(conn)
    conn.execute(text("ALTER TABLE burrow_conversations ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0"))
    old = Table("burrow_snapshots_v1", MetaData(), autoload_with=conn)
    branches = conn.execute(
        select(old.c.partition_key, old.c.app_id).group_by(old.c.partition_key, old.c.app_id)
        .order_by(func.max(old.c.id))
    ).all()
    for partition_key, app_id in branches:
        _convert_branch(conn, old, partition_key, app_id)
    conn.execute(text("DROP TABLE burrow_snapshots_v1"))


def _fast_toast(conn: Connection) -> None:
    """PostgreSQL compresses big list chunks by itself; lz4 (PostgreSQL 14+, when built with it)
    decompresses several times faster than the default pglz, which is most of a long chat's load."""
    if conn.dialect.name != "postgresql":
        return
    has_lz4 = conn.execute(text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")).scalar()
    if has_lz4:
        conn.execute(text(f"ALTER TABLE {ListItem.__tablename__} ALTER COLUMN data SET COMPRESSION lz4"))


def _convert_branch(conn: Connection, old: Table, partition_key: str, app_id: str) -> None:
    rows = conn.execute(
        select(old).where(old.c.partition_key == partition_key, old.c.app_id == app_id).order_by(old.c.sequence_id)
    )
    app_ref = stored = activity = None
    previous: dict | None = None
    manifest: Manifest | None = None
    for row in rows:
        if app_ref is None:
            app_ref = insert_app(conn, partition_key, app_id, row.created_at, None)
        state = json.loads(row.state_json)
        enc = encode(state, row.sequence_id, previous, manifest)
        activity, added = insert_snapshot(conn, app_ref, row.sequence_id, row.position, row.status, row.created_at, enc)
        stored = (stored or 0) + added
        previous, manifest = state, enc.manifest
    if app_ref is not None:
        conn.execute(update(Conversation).where(Conversation.partition_key == partition_key).values(
            activity=activity, stored_bytes=Conversation.stored_bytes + stored))


# ---- version 3: list chunks as bytes with a codec byte (LZ4-compressed from now on) ---------------
def m003_binary_list_chunks(conn: Connection) -> None:
    """Turns the JSON text of list chunks into b'j' + its UTF-8 bytes; new chunks are written LZ4-compressed.

    A database upgraded from v1 by this release already has the binary column (m002 creates the
    tables of core/schema.py), so only databases that reached v2 under the previous release change.
    """
    column = next(c for c in inspect(conn).get_columns(ListItem.__tablename__) if c["name"] == "data")
    if isinstance(column["type"], LargeBinary):
        return
    if conn.dialect.name == "postgresql":
        conn.execute(text(f"ALTER TABLE {ListItem.__tablename__} ALTER COLUMN data TYPE bytea "
                          "USING convert_to('j' || data, 'UTF8')"))
    else:  # SQLite cannot change a column's type: rebuild the table, converting each row
        columns = "app_ref, key, generation, idx, item_count"
        conn.execute(text(f"ALTER TABLE {ListItem.__tablename__} RENAME TO burrow_list_items_v2"))
        ListItem.__table__.create(conn)
        conn.execute(text(f"INSERT INTO {ListItem.__tablename__} ({columns}, data) "
                          f"SELECT {columns}, CAST('j' || data AS BLOB) FROM burrow_list_items_v2"))
        conn.execute(text("DROP TABLE burrow_list_items_v2"))
    chunks = (select(func.count()).select_from(ListItem).join(App, App.id == ListItem.app_ref)
              .where(App.partition_key == Conversation.partition_key).scalar_subquery())
    conn.execute(update(Conversation).values(stored_bytes=Conversation.stored_bytes + chunks))  # one codec byte each


MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "full snapshots and conversation catalog", m001_full_snapshots),
    (2, "delta snapshots", m002_delta_snapshots),
    (3, "binary, compressed list chunks", m003_binary_list_chunks),
]
LATEST = MIGRATIONS[-1][0]


def applied_versions(conn: Connection) -> set[int]:
    if not inspect(conn).has_table(Migration.__tablename__):
        return set()
    return set(conn.execute(select(Migration.version)).scalars())


def apply_migrations(engine: Engine, upto: int | None = None) -> list[int]:
    """Applies the missing migrations (up to `upto`, for tests of old formats); returns what ran."""
    ran: list[int] = []
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        Migration.__table__.create(conn, checkfirst=True)
        done = applied_versions(conn)
        for version, name, migrate in MIGRATIONS:
            if version in done or (upto is not None and version > upto):
                continue
            migrate(conn)
            conn.execute(Migration.__table__.insert().values(
                version=version, name=name, applied_at=datetime.now(timezone.utc)))
            ran.append(version)
    return ran
