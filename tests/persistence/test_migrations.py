"""Schema migrations on SQLite and PostgreSQL: a blank database, and upgrades in place of databases
written in the version-1 format (one full `State.serialize()` JSON per snapshot) and in the
version-2 format (list chunks as JSON text, manifests without list flags).

`V1Persister` writes rows exactly the way the v1 release did, so the upgrade is tested on a
database built by real Burr applications in the old format, branches and a failed step included.
A v2 database is built by today's persister and then rewritten the way the v2 release stored it.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest
from burr.core import State
from burr.core.persistence import BaseStatePersister, PersistedStateData
from sqlalchemy import Column, Engine, ForeignKey, Integer, LargeBinary, MetaData, String, Table, Text, func, inspect, select, text, update

from core.app import build_application
from core.storage import ConversationStore
from core.llm import LLMError
from core.storage.migrations import LATEST, V1_CONVERSATIONS, V1_SNAPSHOTS, applied_versions, apply_migrations
from core.errors import SnapshotConflictError
from core.storage import SQLAlchemyPersister
from core.storage.engine import create_burrow_engine
from core.storage.schema import TABLES, App, Conversation, ListItem, Snapshot, StateValue
from core.storage.codec import unpack_raw
from tests.persistence.test_storage_format import RecordingPersister, ScriptedModel, exact, run_turns, stored_payload


class V1Persister(BaseStatePersister):
    """The v1 storage format: every step stores its full serialized state; a catalog row per key."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def save(self, partition_key, app_id, sequence_id, position, state, status, **kwargs):  # noqa: ANN001
        now = datetime.now(timezone.utc)
        serialized = state.serialize()
        history = serialized.get("chat_history") or []
        first = next((m["content"] for m in history if m.get("role") == "user"), None)
        with self.engine.begin() as conn:
            snapshot_id = conn.execute(V1_SNAPSHOTS.insert().values(
                partition_key=partition_key, app_id=app_id, sequence_id=sequence_id, position=position,
                status=status, created_at=now, state_json=json.dumps(serialized))).inserted_primary_key[0]
            catalog = dict(updated_at=now, activity=snapshot_id, message_count=len(history), latest_app_id=app_id)
            done = conn.execute(V1_CONVERSATIONS.update().where(V1_CONVERSATIONS.c.partition_key == partition_key)
                                .values(**catalog))
            if done.rowcount == 0:
                conn.execute(V1_CONVERSATIONS.insert().values(
                    partition_key=partition_key, title=" ".join(first.split())[:80] if first else None,
                    title_custom=False, created_at=now, **catalog))

    def load(self, partition_key, app_id, sequence_id=None, **kwargs) -> PersistedStateData | None:  # noqa: ANN001
        query = select(V1_SNAPSHOTS).where(V1_SNAPSHOTS.c.partition_key == partition_key)
        if app_id is not None:
            query = query.where(V1_SNAPSHOTS.c.app_id == app_id)
        if sequence_id is not None:
            query = query.where(V1_SNAPSHOTS.c.sequence_id == sequence_id)
        with self.engine.connect() as conn:
            row = conn.execute(query.order_by(V1_SNAPSHOTS.c.id.desc()).limit(1)).first()
        if row is None:
            return None
        return PersistedStateData(partition_key=partition_key, app_id=row.app_id, sequence_id=row.sequence_id,
                                  position=row.position, state=State.deserialize(json.loads(row.state_json)),
                                  created_at=row.created_at.isoformat(), status=row.status)

    def list_app_ids(self, partition_key, **kwargs) -> list[str]:  # noqa: ANN001
        query = (select(V1_SNAPSHOTS.c.app_id).where(V1_SNAPSHOTS.c.partition_key == partition_key)
                 .group_by(V1_SNAPSHOTS.c.app_id).order_by(func.max(V1_SNAPSHOTS.c.id).desc()))
        with self.engine.connect() as conn:
            return list(conn.execute(query).scalars())


def schema_of(engine: Engine) -> dict[str, Any]:
    found = inspect(engine)
    return {name: ({c["name"] for c in found.get_columns(name)},
                   {i["name"] for i in found.get_indexes(name) if "duplicates_constraint" not in i})
            for name in found.get_table_names()}


def declared_schema() -> dict[str, Any]:
    return {t.name: ({c.name for c in t.columns}, {i.name for i in t.indexes}) for t in TABLES}


@pytest.fixture
def engine(db_url: str):
    engine = create_burrow_engine(db_url)
    yield engine
    engine.dispose()


def test_a_blank_database_gets_every_migration(engine):
    persister = SQLAlchemyPersister(engine)
    assert not persister.is_initialized()
    persister.initialize()
    assert persister.is_initialized()
    with engine.connect() as conn:
        assert applied_versions(conn) == set(range(1, LATEST + 1))
    assert schema_of(engine) == declared_schema()


def build_v1_database(engine: Engine) -> dict[tuple[str, str, int], tuple[str, str, str]]:
    """Real apps in the v1 format: a long chat with a fork, a failed step, a renamed one, numbers."""
    assert apply_migrations(engine, upto=1) == [1]
    old = V1Persister(engine)
    run_turns(build_application("long", persister=old, llm=ScriptedModel(), app_id="main"), 1, 40)
    fork = build_application("long", persister=old, llm=ScriptedModel(), app_id="fork",
                             fork_from_app_id="main", fork_from_sequence_id=50)
    run_turns(fork, 100, 2)
    run_turns(build_application("long", persister=old, llm=ScriptedModel(), app_id="main"), 41, 1)  # main is newest
    with pytest.raises(LLMError):
        run_turns(build_application("failed", persister=old, llm=ScriptedModel(fail_turns=[2]), app_id="f"), 1, 2)
    run_turns(build_application("renamed", persister=old, llm=ScriptedModel(), app_id="r"), 1, 1)
    for seq, scores in enumerate(([1, 2], [True, 2, 3], [1.0, 2, 3, 4])):  # == in Python, not the same JSON
        old.save("numbers", "n", seq, "human_input", State({"scores": scores, "big": "x" * 300}), "completed")
    with engine.begin() as conn:
        conn.execute(V1_CONVERSATIONS.update().where(V1_CONVERSATIONS.c.partition_key == "renamed")
                     .values(title="My own title", title_custom=True))
        rows = conn.execute(select(V1_SNAPSHOTS)).all()
    return {(r.partition_key, r.app_id, r.sequence_id): (r.state_json, r.position, r.status) for r in rows}


def v1_listing(engine: Engine) -> list[tuple]:
    query = select(V1_CONVERSATIONS.c.partition_key, V1_CONVERSATIONS.c.title, V1_CONVERSATIONS.c.message_count,
                   V1_CONVERSATIONS.c.latest_app_id).order_by(V1_CONVERSATIONS.c.activity.desc())
    with engine.connect() as conn:
        return [(key, title or "Untitled conversation", count, app) for key, title, count, app in conn.execute(query)]


def test_a_v1_database_upgrades_in_place_with_every_snapshot_intact(engine):
    saved = build_v1_database(engine)
    listing = v1_listing(engine)
    assert len(saved) == 41 * 3 + 6 + 6 + 3 + 3 and [row[0] for row in listing][:2] == ["numbers", "renamed"]

    persister = SQLAlchemyPersister(engine)
    assert not persister.is_initialized()
    persister.initialize()
    assert persister.is_initialized() and schema_of(engine) == declared_schema()  # v1 table gone, same as fresh
    for (key, app_id, seq), (state_json, position, status) in saved.items():
        loaded = persister.load(key, app_id, seq)
        assert (loaded["position"], loaded["status"]) == (position, status)
        assert exact(loaded["state"].serialize()) == exact(json.loads(state_json)), (key, app_id, seq)

    store = ConversationStore(persister)
    assert [(c.partition_key, c.title, c.message_count, c.latest_app_id) for c in store.list()] == listing
    assert persister.list_app_ids("long") == ["main", "fork"]
    assert all(store.get(key).stored_bytes == stored_payload(persister, key) > 0 for key, *_ in listing)
    assert [s.status for s in store.snapshots("failed", "f")][-1] == "failed"


def test_new_saves_continue_the_migrated_branches(engine):
    build_v1_database(engine)
    persister = SQLAlchemyPersister(engine)
    persister.initialize()
    for app_id, last in (("main", 41 * 3 - 1), ("fork", 50 + 2 * 3)):
        assert persister.load("long", app_id)["sequence_id"] == last
        run_turns(build_application("long", persister=persister, llm=ScriptedModel(), app_id=app_id), 200, 1)
        after = persister.load("long", app_id)
        assert after["sequence_id"] == last + 3 and after["position"] == "ai_response"
        history = after["state"]["chat_history"]
        assert history[-2]["content"] == persister.load("long", app_id, last + 1)["state"]["prompt"]
        with pytest.raises(SnapshotConflictError):
            persister.save("long", app_id, last + 1, "human_input", after["state"], "completed")
    assert ConversationStore(persister).list()[0].partition_key == "long"  # the new activity is on top


def test_initialize_twice_is_a_no_op(engine):
    build_v1_database(engine)
    persister = SQLAlchemyPersister(engine)
    persister.initialize()

    def snapshot_of_everything() -> dict[str, list]:
        with engine.connect() as conn:
            return {t.name: sorted(map(tuple, conn.execute(select(t)).all()), key=repr)
                    for t in TABLES if t.name != "burrow_migrations"}

    before = snapshot_of_everything()
    persister.initialize()
    assert apply_migrations(engine) == []
    assert snapshot_of_everything() == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM burrow_migrations")).scalar_one() == LATEST


def v2_list_items(conn) -> Table:  # noqa: ANN001
    """burrow_list_items as the v2 release declared it: the chunk's JSON as text."""
    meta = MetaData()
    Table("burrow_apps", meta, autoload_with=conn)
    return Table(
        "burrow_list_items", meta,
        Column("app_ref", ForeignKey("burrow_apps.id", ondelete="CASCADE"), primary_key=True),
        Column("key", String(255), primary_key=True),
        Column("generation", Integer, primary_key=True, autoincrement=False),
        Column("idx", Integer, primary_key=True, autoincrement=False),
        Column("item_count", Integer, nullable=False),
        Column("data", Text, nullable=False),
    )


def rewrite_as_v2(engine: Engine) -> None:
    """List chunks back to JSON text and manifests without list flags, as the v2 release wrote them."""
    with engine.begin() as conn:
        chunks = [dict(row._mapping) for row in conn.execute(select(ListItem.__table__))]
        manifests = conn.execute(select(Snapshot.id, Snapshot.manifest)).all()
        ListItem.__table__.drop(conn)
        old = v2_list_items(conn)
        old.create(conn)
        conn.execute(old.insert(), [{**c, "data": unpack_raw(c["data"]).decode("utf-8")} for c in chunks])
        for snapshot_id, manifest in manifests:
            entries = {k: v[:4] if v[0] == "l" else v for k, v in json.loads(manifest).items()}
            conn.execute(update(Snapshot).where(Snapshot.id == snapshot_id)
                         .values(manifest=json.dumps(entries, separators=(",", ":"))))
        sizes: dict[str, int] = {}  # what v2 counted: manifests, values and chunk text, in UTF-8 bytes
        for key, size in conn.execute(select(App.partition_key, func.length(Snapshot.manifest))
                                      .join(App, App.id == Snapshot.app_ref)):
            sizes[key] = sizes.get(key, 0) + size
        for key, data in conn.execute(select(App.partition_key, StateValue.data).join(App, App.id == StateValue.app_ref)):
            sizes[key] += len(data)
        for chunk in chunks:
            key = conn.execute(select(App.partition_key).where(App.id == chunk["app_ref"])).scalar_one()
            sizes[key] += len(unpack_raw(chunk["data"]))
        for key, size in sizes.items():
            conn.execute(update(Conversation).where(Conversation.partition_key == key).values(stored_bytes=size))


class V2Writer(RecordingPersister):
    def is_initialized(self) -> bool:
        return True  # on purpose: it writes into a database left at version 2


def build_v2_database(engine: Engine) -> dict:
    """A 70-turn chat (its history sealed into chunks twice), a fork and a list holding a 20-digit number."""
    assert apply_migrations(engine, upto=2) == [1, 2]
    recorder = V2Writer(engine)
    run_turns(build_application("long", persister=recorder, llm=ScriptedModel(), app_id="main"), 1, 70)
    fork = build_application("long", persister=recorder, llm=ScriptedModel(), app_id="fork",
                             fork_from_app_id="main", fork_from_sequence_id=100)
    run_turns(fork, 100, 2)
    for seq, scores in enumerate(([1, 2], [1, 2, 12345678901234567890])):
        recorder.save("numbers", "n", seq, "human_input", State({"scores": scores}), "completed")
    rewrite_as_v2(engine)
    return recorder.saved


def test_a_v2_database_upgrades_in_place_with_every_snapshot_intact(engine):
    saved = build_v2_database(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT data FROM burrow_list_items LIMIT 1")).scalar_one().startswith("[")
    persister = SQLAlchemyPersister(engine)
    assert not persister.is_initialized()
    persister.initialize()
    column = next(c for c in inspect(engine).get_columns("burrow_list_items") if c["name"] == "data")
    assert isinstance(column["type"], LargeBinary) and schema_of(engine) == declared_schema()
    for (app_id, seq), (state_json, position, status) in saved.items():
        key = "numbers" if app_id == "n" else "long"
        loaded = persister.load(key, app_id, seq)
        assert (loaded["position"], loaded["status"]) == (position, status)
        assert exact(loaded["state"].serialize()) == exact(json.loads(state_json)), (key, app_id, seq)
    store = ConversationStore(persister)
    assert all(store.get(key).stored_bytes == stored_payload(persister, key) for key in ("long", "numbers"))

    run_turns(build_application("long", persister=persister, llm=ScriptedModel(), app_id="main"), 71, 30)
    history = persister.load("long", "main")["state"]["chat_history"]  # old text chunks, then new compressed ones
    assert len(history) == 200 and history[:140] == json.loads(saved[("main", 70 * 3 - 1)][0])["chat_history"]
    with engine.connect() as conn:
        codecs = set(conn.execute(text("SELECT substr(data, 1, 1) FROM burrow_list_items")).scalars())
    assert {bytes(c) for c in codecs} == {b"j", b"4"}
