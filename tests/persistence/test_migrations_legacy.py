"""Databases as each released version of Burrow built and wrote them, to test upgrades from.

Everything here is frozen, on purpose independent of both today's code and the Alembic revisions:
the tables each release created (its `burrow_migrations` rows included), and writers that store
Burr steps in each release's format. v1: one full `State.serialize()` JSON per step. v2: delta
snapshots, list chunks as JSON text, list entries ["l", generation, length, sealed]. v3: chunks as
b"4" + LZ4 or b"j" + JSON, list entries with flags. The writers are driven by real Burr
applications, so the states are exactly the ones the app produces.
"""
from __future__ import annotations

import json
import re
import zlib
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import lz4.block
import pytest
from burr.core import State
from burr.core.persistence import BaseStatePersister, PersistedStateData
from sqlalchemy import (BigInteger, Boolean, Column, Connection, DateTime, Engine, ForeignKey, Index, Integer,
                        LargeBinary, MetaData, String, Table, Text, UniqueConstraint, func, select, text)

from core.app import build_application
from core.llm import LLMError
from tests.persistence.test_storage_format import ScriptedModel, run_turns

BigId = BigInteger().with_variant(Integer(), "sqlite")
RELEASE_MIGRATIONS = {1: "full snapshots and conversation catalog", 2: "delta snapshots",
                      3: "binary, compressed list chunks"}
Saved = dict[tuple[str, str, int], tuple[str, str, str]]  # (key, app_id, seq) -> (state JSON, position, status)


# ---- the tables, as the releases declared them ----------------------------------------------------
def v1_tables() -> SimpleNamespace:
    meta = MetaData()
    return SimpleNamespace(metadata=meta, migrations=Table(
        "burrow_migrations", meta,
        Column("version", Integer, primary_key=True, autoincrement=False),
        Column("name", String(200), nullable=False),
        Column("applied_at", DateTime(timezone=True), nullable=False),
    ), snapshots=Table(
        "burrow_snapshots", meta,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("partition_key", String(255), nullable=False),
        Column("app_id", String(255), nullable=False),
        Column("sequence_id", Integer, nullable=False),
        Column("position", String(255), nullable=False),
        Column("status", String(16), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("state_json", Text, nullable=False),
        UniqueConstraint("partition_key", "app_id", "sequence_id", name="uq_burrow_snapshots_v1_step"),
    ), conversations=Table(
        "burrow_conversations", meta,
        Column("partition_key", String(255), primary_key=True),
        Column("title", Text),
        Column("title_custom", Boolean, nullable=False, default=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("activity", BigInteger, nullable=False),
        Column("message_count", Integer, nullable=False, default=0),
        Column("latest_app_id", String(255), nullable=False),
        Index("ix_burrow_conversations_activity", "activity"),
    ))


def delta_tables(version: int) -> SimpleNamespace:
    """The v2/v3 tables (they differ only in the type of a chunk's data)."""
    meta = MetaData()
    ref = lambda **kw: Column("app_ref", BigId, ForeignKey("burrow_apps.id", ondelete="CASCADE"), **kw)  # noqa: E731
    apps = Table(
        "burrow_apps", meta,
        Column("id", BigId, primary_key=True, autoincrement=True),
        Column("partition_key", String(255), nullable=False), Column("app_id", String(255), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False),
        Column("last_sequence_id", Integer, nullable=False), Column("activity", BigInteger, nullable=False),
        Column("forked_from_app_id", String(255)), Column("forked_from_sequence_id", Integer),
        UniqueConstraint("partition_key", "app_id", name="uq_burrow_apps_key"),
        Index("ix_burrow_apps_partition_activity", "partition_key", "activity"),
    )
    snapshots = Table(
        "burrow_snapshots", meta,
        Column("id", BigId, primary_key=True, autoincrement=True), ref(nullable=False),
        Column("sequence_id", Integer, nullable=False), Column("position", String(255), nullable=False),
        Column("status", String(16), nullable=False), Column("created_at", DateTime(timezone=True), nullable=False),
        Column("manifest", Text, nullable=False), Column("stored_bytes", Integer, nullable=False),
        UniqueConstraint("app_ref", "sequence_id", name="uq_burrow_snapshots_step"),
    )
    values = Table(
        "burrow_values", meta, ref(primary_key=True), Column("key", String(255), primary_key=True),
        Column("sequence_id", Integer, primary_key=True, autoincrement=False),
        Column("data", LargeBinary, nullable=False),
    )
    chunks = Table(
        "burrow_list_items", meta, ref(primary_key=True), Column("key", String(255), primary_key=True),
        Column("generation", Integer, primary_key=True, autoincrement=False),
        Column("idx", Integer, primary_key=True, autoincrement=False), Column("item_count", Integer, nullable=False),
        Column("data", LargeBinary if version >= 3 else Text, nullable=False),
    )
    conversations = Table("burrow_conversations", MetaData(), *(c._copy() for c in v1_tables().conversations.c),
                          Column("stored_bytes", BigInteger, nullable=False, server_default=text("0")))
    return SimpleNamespace(apps=apps, snapshots=snapshots, values=values, chunks=chunks, conversations=conversations)


def create_release_schema(engine: Engine, version: int) -> None:
    """A blank database as release `version` left it: its first start ran migrations 1..version."""
    with engine.begin() as conn:
        v1 = v1_tables()
        v1.metadata.create_all(conn)
        if version >= 2:  # what the v2 release's migration 2 did to a v1 database (here: an empty one)
            conn.execute(text("ALTER TABLE burrow_snapshots RENAME TO burrow_snapshots_v1"))
            t = delta_tables(version)
            for table in (t.apps, t.snapshots, t.values, t.chunks):
                table.create(conn)
            if conn.dialect.name == "postgresql" and conn.execute(text(
                    "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'")).scalar():
                conn.execute(text("ALTER TABLE burrow_list_items ALTER COLUMN data SET COMPRESSION lz4"))
            conn.execute(text("ALTER TABLE burrow_conversations ADD COLUMN stored_bytes BIGINT NOT NULL DEFAULT 0"))
            conn.execute(text("DROP TABLE burrow_snapshots_v1"))
        conn.execute(v1.migrations.insert(), [dict(version=v, name=RELEASE_MIGRATIONS[v], applied_at=_now())
                                              for v in range(1, version + 1)])


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _title(serialized: dict) -> str | None:
    first = next((m["content"] for m in serialized.get("chat_history") or [] if m.get("role") == "user"), None)
    return " ".join(first.split())[:80] if first else None


def _catalog(conn: Connection, table: Table, key: str, app_id: str, serialized: dict, activity: int,
             stored: int | None) -> None:
    """The releases' catalog row: created with the first message as title, then kept up to date
    (v1 had no size column: `stored` is None)."""
    row = dict(updated_at=_now(), activity=activity, message_count=len(serialized.get("chat_history") or []),
               latest_app_id=app_id)
    grow = {} if stored is None else {"stored_bytes": table.c.stored_bytes + stored}
    if conn.execute(table.update().where(table.c.partition_key == key).values(**row, **grow)).rowcount == 0:
        first = {} if stored is None else {"stored_bytes": stored}
        conn.execute(table.insert().values(partition_key=key, title=_title(serialized), title_custom=False,
                                           created_at=row["updated_at"], **row, **first))


# ---- the writers ----------------------------------------------------------------------------------
class V1Persister(BaseStatePersister):
    """The v1 format: every step stores its full serialized state."""

    def __init__(self, engine: Engine):
        self.engine, self.t, self.saved = engine, v1_tables(), {}

    def save(self, partition_key, app_id, sequence_id, position, state, status, **kwargs):  # noqa: ANN001
        serialized = state.serialize()
        state_json = json.dumps(serialized)
        with self.engine.begin() as conn:
            snapshot_id = conn.execute(self.t.snapshots.insert().values(
                partition_key=partition_key, app_id=app_id, sequence_id=sequence_id, position=position,
                status=status, created_at=_now(), state_json=state_json)).inserted_primary_key[0]
            _catalog(conn, self.t.conversations, partition_key, app_id, serialized, snapshot_id, None)
        self.saved[(partition_key, app_id, sequence_id)] = (state_json, position, status)

    def load(self, partition_key, app_id, sequence_id=None, **kwargs) -> PersistedStateData | None:  # noqa: ANN001
        s = self.t.snapshots
        query = select(s).where(s.c.partition_key == partition_key, s.c.app_id == app_id)
        if sequence_id is not None:
            query = query.where(s.c.sequence_id == sequence_id)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(s.c.sequence_id.desc()).limit(1)).first()
        return None if row is None else PersistedStateData(
            partition_key=partition_key, app_id=app_id, sequence_id=row.sequence_id, position=row.position,
            state=State.deserialize(json.loads(row.state_json)), created_at=row.created_at.isoformat(),
            status=row.status)

    def list_app_ids(self, partition_key, **kwargs) -> list[str]:  # noqa: ANN001
        s = self.t.snapshots
        with self.engine.connect() as conn:
            return list(conn.execute(select(s.c.app_id).where(s.c.partition_key == partition_key)
                                     .group_by(s.c.app_id).order_by(func.max(s.c.id).desc())).scalars())


def _dumps(value: Any) -> bytes:
    text_ = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    try:
        return text_.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode("ascii")


def _flags(raw: bytes) -> int:
    return (1 if b'"__burr_serde__"' in raw else 0) | (2 if re.search(rb"[0-9]{19}", raw) else 0)


class DeltaPersister(V1Persister):
    """The v2 or v3 format: a manifest per step, new values and appended list items only, sealing every
    64 pending items. Loads are answered from what it saved (the releases' reader is not needed here)."""

    def __init__(self, engine: Engine, version: int):
        self.engine, self.version, self.t, self.saved = engine, version, delta_tables(version), {}
        self.branches: dict[tuple[str, str], SimpleNamespace] = {}

    def save(self, partition_key, app_id, sequence_id, position, state, status, **kwargs):  # noqa: ANN001
        serialized = state.serialize()
        with self.engine.begin() as conn:
            branch = self._branch(conn, partition_key, app_id)
            manifest, values, chunks, freed = self._encode(conn, branch, serialized, sequence_id)
            stored = len(manifest) + sum(len(v) for _, v in values) + sum(len(c[4]) for c in chunks) - freed
            snapshot_id = conn.execute(self.t.snapshots.insert().values(
                app_ref=branch.ref, sequence_id=sequence_id, position=position, status=status, created_at=_now(),
                manifest=manifest, stored_bytes=stored)).inserted_primary_key[0]
            if values:
                conn.execute(self.t.values.insert(), [dict(app_ref=branch.ref, key=k, sequence_id=sequence_id, data=v)
                                                      for k, v in values])
            if chunks:
                conn.execute(self.t.chunks.insert(), [dict(app_ref=branch.ref, key=k, generation=g, idx=i,
                                                           item_count=n, data=d if self.version >= 3 else d.decode())
                                                      for k, g, i, n, d in chunks])
            conn.execute(self.t.apps.update().where(self.t.apps.c.id == branch.ref).values(
                last_sequence_id=sequence_id, activity=snapshot_id, updated_at=_now()))
            _catalog(conn, self.t.conversations, partition_key, app_id, serialized, snapshot_id, stored)
        branch.previous = serialized
        branch.states[sequence_id] = self.saved[(partition_key, app_id, sequence_id)] = (
            json.dumps(serialized), position, status)

    def _branch(self, conn: Connection, key: str, app_id: str) -> SimpleNamespace:
        if (key, app_id) not in self.branches:
            ref = conn.execute(self.t.apps.insert().values(
                partition_key=key, app_id=app_id, created_at=_now(), updated_at=_now(), last_sequence_id=-1,
                activity=0)).inserted_primary_key[0]
            self.branches[(key, app_id)] = SimpleNamespace(ref=ref, previous={}, entries={}, sizes={}, states={})
        return self.branches[(key, app_id)]

    def _encode(self, conn: Connection, branch: SimpleNamespace, state: dict, seq: int) -> tuple:
        where: dict[str, list] = {}
        values, chunks, freed = [], [], 0
        for key, value in state.items():
            raw, old = _dumps(value), branch.entries.get(key)
            if isinstance(value, list):
                where[key], chunk, freed_now = self._list(conn, branch, key, value, seq)
                freed += freed_now
                chunks += [chunk] if chunk else []
            elif len(raw) <= 128:
                where[key] = ["i", value]
            elif old and old[0] == "v" and branch.previous.get(key) == value and _dumps(branch.previous[key]) == raw:
                where[key] = old
            else:
                packed = zlib.compress(raw, 6) if len(raw) >= 200 else raw
                values.append((key, b"z" + packed if len(packed) < len(raw) else b"j" + raw))
                where[key] = ["v", seq]
        branch.entries = where
        return json.dumps(where, separators=(",", ":")), values, chunks, freed

    def _list(self, conn: Connection, branch: SimpleNamespace, key: str, value: list, seq: int) -> tuple:
        old, previous = branch.entries.get(key), branch.previous.get(key)
        head = value[: len(previous)] if isinstance(previous, list) else None
        if old and old[0] == "l" and head == previous and len(head) == len(previous) and _dumps(head) == _dumps(previous):
            generation, start, sealed, flags = old[1], len(previous), old[3], old[4] if len(old) > 4 else 0
        else:
            generation, start, sealed, flags = seq, 0, 0, 0
        freed = 0
        if len(value) - sealed >= 64:
            if start > sealed:  # the small chunks [sealed, start) are rewritten into one sealed chunk
                gone = [spot for spot in branch.sizes if spot[:2] == (key, generation) and sealed <= spot[2] < start]
                freed = sum(branch.sizes.pop(spot) for spot in gone)
                c = self.t.chunks.c
                conn.execute(self.t.chunks.delete().where(c.app_ref == branch.ref, c.key == key, c.generation ==
                                                          generation, c.idx >= sealed, c.idx < start))
            start, sealed = sealed, len(value)
        chunk = None
        if len(value) > start:
            raw = _dumps(value[start:])
            flags |= _flags(raw)
            data = self._pack_items(raw, start < sealed) if self.version >= 3 else raw
            chunk = (key, generation, start, len(value) - start, data)
            branch.sizes[(key, generation, start)] = len(data)
        entry = ["l", generation, len(value), sealed] + ([flags] if self.version >= 3 else [])
        return entry, chunk, freed

    @staticmethod
    def _pack_items(raw: bytes, sealed: bool) -> bytes:
        packed = lz4.block.compress(raw, mode="high_compression", compression=3) if sealed else lz4.block.compress(raw)
        return b"4" + packed if len(packed) < len(raw) else b"j" + raw

    def load(self, partition_key, app_id, sequence_id=None, **kwargs) -> PersistedStateData | None:  # noqa: ANN001
        branch = self.branches.get((partition_key, app_id))
        if branch is None or not branch.states or (sequence_id is not None and sequence_id not in branch.states):
            return None
        seq = max(branch.states) if sequence_id is None else sequence_id
        state_json, position, status = branch.states[seq]
        return PersistedStateData(partition_key=partition_key, app_id=app_id, sequence_id=seq, position=position,
                                  state=State.deserialize(json.loads(state_json)), created_at=_now().isoformat(),
                                  status=status)

    def list_app_ids(self, partition_key, **kwargs) -> list[str]:  # noqa: ANN001
        a = self.t.apps
        with self.engine.connect() as conn:
            return list(conn.execute(select(a.c.app_id).where(a.c.partition_key == partition_key)
                                     .order_by(a.c.activity.desc())).scalars())


# ---- what the tests upgrade -----------------------------------------------------------------------
ODD_STATES = [  # numbers that are == in Python but not the same JSON, key order changes, sealed lists, surrogates
    {"scores": [1, 2], "big": "x" * 300, "flag": 1, "empty": []},
    {"scores": [True, 2, 3], "big": "x" * 300, "flag": 1.0, "empty": []},
    {"big": "x" * 300, "scores": [1.0, 2, 3, 4], "flag": True, "long": [12345678901234567890]},
    {"scores": [1.0, 2, 3, 4, 5], "big": "y" * 300, "many": list(range(70)), "text": ["lone \ud800", "héllo ☃"]},
    {"scores": [1.0, 2, 3, 4, 5], "big": "y" * 300, "many": list(range(71)), "text": ["lone \ud800", "héllo ☃", "\n"]},
]


def build_release_database(engine: Engine, version: int, turns: int = 70) -> Saved:
    """A long chat (history sealed twice), a fork, a failed step, a renamed chat and odd values, written
    by release `version`'s writer into the tables it created. Returns every saved step."""
    create_release_schema(engine, version)
    writer = V1Persister(engine) if version == 1 else DeltaPersister(engine, version)
    app = lambda key, app_id, **kw: build_application(key, persister=writer, llm=kw.pop("llm", ScriptedModel()),  # noqa: E731
                                                      app_id=app_id, **kw)
    run_turns(app("long", "main"), 1, turns)
    run_turns(app("long", "fork", fork_from_app_id="main", fork_from_sequence_id=min(100, 3 * turns - 2)), 500, 2)
    run_turns(app("long", "main"), turns + 1, 1)  # main is the newest branch again
    with pytest.raises(LLMError):
        run_turns(app("failed", "f", llm=ScriptedModel(fail_turns=[2])), 1, 2)
    run_turns(app("renamed", "r"), 1, 1)
    for seq, state in enumerate(ODD_STATES):
        writer.save("numbers", "n", seq, "human_input", State(state), "completed")
    conversations = writer.t.conversations
    with engine.begin() as conn:
        conn.execute(conversations.update().where(conversations.c.partition_key == "renamed")
                     .values(title="My own title", title_custom=True))
    return writer.saved


@pytest.mark.parametrize("version", [1, 2, 3])
def test_the_release_writers_write_their_own_format(db_url, version):
    """The builders are only worth what they resemble: check the marks of each format."""
    from core.storage.engine import create_burrow_engine

    engine = create_burrow_engine(db_url)
    try:
        saved = build_release_database(engine, version, turns=35)
        with engine.connect() as conn:
            versions = list(conn.execute(text("SELECT version FROM burrow_migrations ORDER BY version")).scalars())
            v1_rows = conn.execute(text("SELECT count(*) FROM burrow_snapshots")).scalar_one()
            chunks = [] if version == 1 else [bytes(d) if version >= 3 else d.encode() for d in
                                              conn.execute(text("SELECT data FROM burrow_list_items")).scalars()]
            manifests = [] if version == 1 else [
                json.loads(m) for m in conn.execute(text("SELECT manifest FROM burrow_snapshots")).scalars()]
    finally:
        engine.dispose()
    assert versions == list(range(1, version + 1)) and v1_rows == len(saved)
    if version == 1:
        return
    assert {c[:1] for c in chunks} == ({b"j", b"4"} if version >= 3 else {b"["})
    lists = [e for m in manifests for e in m.values() if e[0] == "l"]
    assert {len(e) for e in lists} == ({5} if version >= 3 else {4})
    assert any(e[3] > 0 for e in lists)  # some lists were sealed
