"""Schema 0002: delta snapshots (only what changed), a branch table, each conversation's size.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01

Every v1 snapshot (one full JSON state) is rewritten into the v2 layout, branch by branch, so each
step loads exactly as it was saved and the catalog keeps its order. Frozen: the v2 tables and the
v2 encoding are copied here (list chunks as JSON *text*, manifest list entries
["l", generation, length, sealed] without flags, values as b"j"/b"z" blobs), so a later change to
Burrow's codec never changes what this revision writes. 0003 then turns the text chunks into bytes.

The conversion needs Python: in offline (SQL-printing) mode this revision prints a comment saying
so, and statements that stop the script before it would drop unconverted v1 rows.
"""
from __future__ import annotations

import json
import zlib
from typing import Any

import sqlalchemy as sa
from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

INLINE_LIMIT = 128  # JSON bytes; smaller values live in the manifest itself
COMPRESS_FROM = 200  # JSON bytes; bigger values are zlib-compressed when that saves space
CHUNK_ITEMS = 64  # pending list items are merged into one sealed chunk once this many accumulate
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit id.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LZ4_TOAST = """DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' AND 'lz4' = ANY(enumvals)) THEN
    EXECUTE 'ALTER TABLE burrow_list_items ALTER COLUMN data SET COMPRESSION lz4';
  END IF;
END $$"""
# Offline, a script must stop rather than drop v1 rows it cannot convert: inserting 1 (there are v1
# rows) into this table breaks its CHECK, in plain SQL on any database, and the script rolls back.
V1_GUARD = (
    "CREATE TABLE burrow_v1_guard (v1_rows INTEGER CONSTRAINT burrow_v1_snapshots_need_the_online_upgrade "
    "CHECK (v1_rows = 0))",
    "INSERT INTO burrow_v1_guard SELECT count(*) FROM (SELECT 1 FROM burrow_snapshots_v1 LIMIT 1) AS v1",
    "DROP TABLE burrow_v1_guard",
)


def upgrade() -> None:
    op.rename_table("burrow_snapshots", "burrow_snapshots_v1")
    tables = _create_v2_tables()
    if op.get_context().dialect.name == "postgresql":
        # lz4 (PostgreSQL 14+, when built with it) decompresses big chunks several times faster than pglz.
        op.execute(LZ4_TOAST)
    op.add_column("burrow_conversations",
                  sa.Column("stored_bytes", sa.BigInteger, nullable=False, server_default=sa.text("0")))
    if context.is_offline_mode():
        _offline_note()
    else:
        _convert(op.get_bind(), tables)
    op.drop_table("burrow_snapshots_v1")


def downgrade() -> None:
    raise NotImplementedError("Burrow's schema only moves forward: restore a backup to go back")


def _create_v2_tables() -> dict[str, sa.Table]:
    """The v2 tables, as the v2 release declared them (burrow_list_items.data as text)."""
    app_ref = lambda: sa.Column("app_ref", BigId, sa.ForeignKey("burrow_apps.id", ondelete="CASCADE"),  # noqa: E731
                                primary_key=True)
    apps = op.create_table(
        "burrow_apps",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("partition_key", sa.String(255), nullable=False),
        sa.Column("app_id", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sequence_id", sa.Integer, nullable=False),
        sa.Column("activity", sa.BigInteger, nullable=False),
        sa.Column("forked_from_app_id", sa.String(255)),
        sa.Column("forked_from_sequence_id", sa.Integer),
        sa.UniqueConstraint("partition_key", "app_id", name="uq_burrow_apps_key"),
    )
    op.create_index("ix_burrow_apps_partition_activity", "burrow_apps", ["partition_key", "activity"])
    snapshots = op.create_table(
        "burrow_snapshots",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("app_ref", BigId, sa.ForeignKey("burrow_apps.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sequence_id", sa.Integer, nullable=False),
        sa.Column("position", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("stored_bytes", sa.Integer, nullable=False),
        sa.UniqueConstraint("app_ref", "sequence_id", name="uq_burrow_snapshots_step"),
    )
    values = op.create_table(
        "burrow_values", app_ref(),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("sequence_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    chunks = op.create_table(
        "burrow_list_items", app_ref(),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("generation", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("item_count", sa.Integer, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    return {"apps": apps, "snapshots": snapshots, "values": values, "chunks": chunks}


def _offline_note() -> None:
    op.get_context().impl.static_output(
        "-- 0002: converting version-1 snapshots into delta rows needs Python and is not in this script.\n"
        "-- On a database that holds v1 snapshots run `python -m core.storage.migrations upgrade` instead;\n"
        "-- the next statements stop this script there (CHECK burrow_v1_snapshots_need_the_online_upgrade).")
    for statement in V1_GUARD:
        op.execute(statement)


# ---- the conversion ---------------------------------------------------------------------------
V1 = sa.table(
    "burrow_snapshots_v1",
    *(sa.column(name, type_) for name, type_ in (
        ("id", sa.Integer()), ("partition_key", sa.String()), ("app_id", sa.String()), ("sequence_id", sa.Integer()),
        ("position", sa.String()), ("status", sa.String()), ("created_at", sa.DateTime(timezone=True)),
        ("state_json", sa.Text()))),
)
CONVERSATIONS = sa.table("burrow_conversations", sa.column("partition_key", sa.String()),
                         sa.column("activity", sa.BigInteger()), sa.column("stored_bytes", sa.BigInteger()))


def _convert(conn: sa.Connection, tables: dict[str, sa.Table]) -> None:
    """Branches in the order of their newest v1 snapshot, so new snapshot ids keep the catalog's order."""
    branches = conn.execute(sa.select(V1.c.partition_key, V1.c.app_id).group_by(V1.c.partition_key, V1.c.app_id)
                            .order_by(sa.func.max(V1.c.id))).all()
    for partition_key, app_id in branches:
        ids = conn.execute(sa.select(V1.c.id).where(V1.c.partition_key == partition_key, V1.c.app_id == app_id)
                           .order_by(V1.c.sequence_id)).scalars().all()
        writer = _BranchWriter(conn, tables)
        for snapshot_id in ids:  # one full state in memory at a time: v1 states can be megabytes each
            writer.add(conn.execute(sa.select(V1).where(V1.c.id == snapshot_id)).one(), partition_key, app_id)
        writer.finish(partition_key)


def _dumps(value: Any) -> bytes:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates have no UTF-8: \u escapes keep them exactly
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def _pack(raw: bytes) -> bytes:
    if len(raw) >= COMPRESS_FROM:
        packed = zlib.compress(raw, 6)
        if len(packed) < len(raw):
            return b"z" + packed
    return b"j" + raw


def _starts_with(value: list, prefix: list) -> bool:
    """Exactly the same items: equal *and* the same JSON (== takes 1, 1.0 and True for one another)."""
    head = value[: len(prefix)]
    return len(prefix) <= len(value) and head == prefix and _dumps(head) == _dumps(prefix)


class _BranchWriter:
    """Writes one branch's snapshots in the v2 delta layout, each against the one before it."""

    def __init__(self, conn: sa.Connection, tables: dict[str, sa.Table]):
        self.conn, self.t = conn, tables
        self.app_ref: int | None = None
        self.previous: dict[str, Any] = {}
        self.entries: dict[str, list] = {}  # the previous manifest's entries
        self.chunk_bytes: dict[tuple[str, int, int], int] = {}  # (key, generation, idx) -> UTF-8 bytes written
        self.stored = 0
        self.last: tuple[int, int, Any] | None = None  # (snapshot id, sequence id, created_at)

    def add(self, row: Any, partition_key: str, app_id: str) -> None:
        if self.app_ref is None:
            self.app_ref = self.conn.execute(self.t["apps"].insert().values(
                partition_key=partition_key, app_id=app_id, created_at=row.created_at, updated_at=row.created_at,
                last_sequence_id=-1, activity=0)).inserted_primary_key[0]
        state = json.loads(row.state_json)
        manifest, values, chunks, freed = self._encode(state, row.sequence_id)
        added = len(manifest) + sum(len(data) for _, data in values) + sum(len(c[4]) for c in chunks) - freed
        snapshot_id = self.conn.execute(self.t["snapshots"].insert().values(
            app_ref=self.app_ref, sequence_id=row.sequence_id, position=row.position, status=row.status,
            created_at=row.created_at, manifest=manifest, stored_bytes=added)).inserted_primary_key[0]
        if values:
            self.conn.execute(self.t["values"].insert(), [
                dict(app_ref=self.app_ref, key=key, sequence_id=row.sequence_id, data=data) for key, data in values])
        if chunks:
            self.conn.execute(self.t["chunks"].insert(), [
                dict(app_ref=self.app_ref, key=key, generation=gen, idx=idx, item_count=count, data=raw.decode("utf-8"))
                for key, gen, idx, count, raw in chunks])
        self.stored += added
        self.previous, self.last = state, (snapshot_id, row.sequence_id, row.created_at)

    def _encode(self, state: dict[str, Any], seq: int) -> tuple[str, list, list, int]:
        """(manifest JSON, new value rows, new chunks, bytes of the chunks a merge deleted)."""
        where: dict[str, list] = {}
        values: list[tuple[str, bytes]] = []
        chunks: list[tuple[str, int, int, int, bytes]] = []
        freed = 0
        for key, value in state.items():
            if isinstance(value, list):
                where[key], merged, chunk = self._list(key, value, seq)
                freed += self._delete_merged(key, where[key][1], merged)
                if chunk is not None:  # recorded after the delete: a sealed chunk starts where merged ones did
                    chunks.append(chunk)
                    self.chunk_bytes[chunk[:3]] = len(chunk[4])
                continue
            raw = _dumps(value)
            old = self.entries.get(key)
            if len(raw) <= INLINE_LIMIT:
                where[key] = ["i", value]
            elif old and old[0] == "v" and self.previous.get(key) == value and _dumps(self.previous[key]) == raw:
                where[key] = old  # unchanged: point at the row already stored
            else:
                values.append((key, _pack(raw)))
                where[key] = ["v", seq]
        self.entries = where
        return json.dumps(where, separators=(",", ":")), values, chunks, freed

    def _list(self, key: str, value: list, seq: int) -> tuple[list, tuple[int, int] | None, tuple | None]:
        """An appended list adds one chunk of its new items; CHUNK_ITEMS pending ones are sealed into one.

        Returns the manifest entry, the [start, end) of small chunks a seal replaces, and the new chunk.
        """
        old, previous = self.entries.get(key), self.previous.get(key)
        if old and old[0] == "l" and isinstance(previous, list) and _starts_with(value, previous):
            generation, start, sealed = old[1], len(previous), old[3]
        else:
            generation, start, sealed = seq, 0, 0
        merged = None
        if len(value) - sealed >= CHUNK_ITEMS:
            merged = (sealed, start) if start > sealed else None
            start, sealed = sealed, len(value)
        chunk = (key, generation, start, len(value) - start, _dumps(value[start:])) if len(value) > start else None
        return ["l", generation, len(value), sealed], merged, chunk

    def _delete_merged(self, key: str, generation: int, merged: tuple[int, int] | None) -> int:
        """Deletes the small chunks a seal rewrote; returns their bytes (all written by this writer)."""
        if merged is None:
            return 0
        start, end = merged
        gone = [spot for spot in self.chunk_bytes if spot[:2] == (key, generation) and start <= spot[2] < end]
        chunks = self.t["chunks"]
        self.conn.execute(chunks.delete().where(
            chunks.c.app_ref == self.app_ref, chunks.c.key == key, chunks.c.generation == generation,
            chunks.c.idx >= start, chunks.c.idx < end))
        return sum(self.chunk_bytes.pop(spot) for spot in gone)

    def finish(self, partition_key: str) -> None:
        if self.last is None:
            return
        snapshot_id, seq, created_at = self.last
        apps = self.t["apps"]
        self.conn.execute(apps.update().where(apps.c.id == self.app_ref).values(
            last_sequence_id=seq, activity=snapshot_id, updated_at=created_at))
        self.conn.execute(CONVERSATIONS.update().where(CONVERSATIONS.c.partition_key == partition_key).values(
            activity=snapshot_id, stored_bytes=CONVERSATIONS.c.stored_bytes + self.stored))
