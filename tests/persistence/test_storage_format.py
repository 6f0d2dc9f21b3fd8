"""The delta storage format on a real database (SQLite file and PostgreSQL): exact round trips of
every snapshot of a long conversation, linear growth, deletion, WAL, one transaction per save.

Conversations are driven through the real Burr application (core.app) with a deterministic
in-process model, so the saved states are exactly the ones the app produces.
"""
from __future__ import annotations

import json
import os
import random
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import pytest
from typing import Any
from sqlalchemy import LargeBinary, cast, event, func, insert, select, text

from core.app import build_application
from core.storage import ConversationStore
from core.llm import LLMError, OfflineModel
from core.storage import SQLAlchemyPersister
from core.storage.schema import App, Conversation, ListItem, Snapshot, StateValue
from core.storage.codec import CHUNK_ITEMS

WORDS = "state snapshot branch river coffee model reply token python garden build check load".split()
REPLY_ACTIONS = ["ai_response", "unsafe_response"]


def text_of(seed: str, size: int = 600) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(size // 6))[:size]


class ScriptedModel:
    """Answers at once with deterministic text; fails the turns listed in `fail_turns`."""

    label, offline = "scripted", True

    def __init__(self, fail_turns: Sequence[int] = ()):
        self.fail_turns = set(fail_turns)

    def stream(self, messages: Sequence[dict], cancel: threading.Event | None = None,
               report: Any = None) -> Iterator[str]:
        turn = sum(1 for m in messages if m["role"] == "user")
        if turn in self.fail_turns:
            raise LLMError("server_error", "the model failed (scripted)")
        reply = text_of(f"reply-{turn}") + " héllo ☃"  # non-ASCII survives too
        yield reply[:100]
        yield reply[100:]

    def moderate(self, text: str) -> bool:
        return False


class RecordingPersister(SQLAlchemyPersister):
    """Keeps, for every save, the serialized state as it was handed over (a deep JSON copy)."""

    def __init__(self, engine):  # noqa: ANN001
        super().__init__(engine)
        self.saved: dict[tuple[str, int], tuple[str, str, str]] = {}

    def save(self, partition_key, app_id, sequence_id, position, state, status, **kwargs):  # noqa: ANN001
        super().save(partition_key, app_id, sequence_id, position, state, status, **kwargs)
        self.saved[(app_id, sequence_id)] = (json.dumps(state.serialize()), position, status)


def exact(state: dict) -> str:
    """The state as JSON text: tells 1, 1.0 and True apart, and keys must come in the same order."""
    return json.dumps(state)


def run_turns(app, first: int, count: int) -> None:  # noqa: ANN001 - a Burr Application
    for turn in range(first, first + count):
        _, container = app.stream_result(halt_after=REPLY_ACTIONS, inputs={"prompt": text_of(f"user-{turn}")})
        for _ in container:
            pass
        container.get()


@pytest.fixture
def recorder(db_url: str) -> Iterator[RecordingPersister]:
    probe = SQLAlchemyPersister.from_url(db_url)
    persister = RecordingPersister(probe.engine)
    persister.initialize()
    yield persister
    persister.engine.dispose()


def test_every_snapshot_of_a_long_conversation_round_trips_exactly(recorder, db_url):
    app = build_application("long", persister=recorder, llm=ScriptedModel(), app_id="main")
    run_turns(app, 1, 150)
    failing = build_application("long", persister=recorder, llm=ScriptedModel(fail_turns=[151]), app_id="main")
    with pytest.raises(LLMError):
        run_turns(failing, 151, 1)
    fork = build_application("long", persister=recorder, llm=ScriptedModel(), app_id="fork",
                             fork_from_app_id="main", fork_from_sequence_id=200)
    run_turns(fork, 500, 3)
    statuses = [status for _, _, status in recorder.saved.values()]
    assert statuses.count("failed") == 1 and len(recorder.saved) == 150 * 3 + 3 + 9

    uncached = SQLAlchemyPersister.from_url(db_url, list_cache_bytes=0)  # every load reads the database
    cached = SQLAlchemyPersister.from_url(db_url)  # loads extend what earlier (shuffled) loads read
    saved = list(recorder.saved.items())
    random.Random(4).shuffle(saved)
    try:
        for (app_id, seq), (state_json, position, status) in saved:
            for fresh in (uncached, cached):
                loaded = fresh.load("long", app_id, seq)
                assert (loaded["position"], loaded["status"], loaded["sequence_id"]) == (position, status, seq)
                assert exact(loaded["state"].serialize()) == exact(json.loads(state_json)), (app_id, seq)
                assert exact(fresh.load_serialized("long", app_id, seq)) == exact(json.loads(state_json))
        assert uncached.load("long", None)["app_id"] == "fork"  # the most recent branch
        assert uncached.list_cache.size == 0 and cached.list_cache.size > 0
    finally:
        uncached.engine.dispose()
        cached.engine.dispose()


def test_messages_with_newlines_quotes_and_backslashes_survive_the_merge_into_sealed_chunks(recorder, db_url):
    """JSON escapes (\\n, \\", \\\\) inside chunks that a seal deletes and rewrites: on PostgreSQL the
    previous release failed the save that sealed them (it measured the text by casting it to bytea)."""
    app = build_application("escapes", persister=recorder, llm=OfflineModel(word_delay=0), app_id="main")
    for turn in range(CHUNK_ITEMS // 2 + 3):  # past the first seal of the history
        prompt = f'line one\nline "two" with a back\\slash, tab\tand {turn}'
        _, container = app.stream_result(halt_after=REPLY_ACTIONS, inputs={"prompt": prompt})
        for _ in container:
            pass
    fresh = SQLAlchemyPersister.from_url(db_url, list_cache_bytes=0)
    try:
        for (app_id, seq), (state_json, _, _) in recorder.saved.items():
            assert exact(fresh.load("escapes", app_id, seq)["state"].serialize()) == exact(json.loads(state_json))
        history = fresh.load("escapes", "main")["state"]["chat_history"]
        assert len(history) == CHUNK_ITEMS + 6 and "\n\n" in history[-1]["content"] and '"two"' in history[-2]["content"]
    finally:
        fresh.engine.dispose()


def stored_payload(persister: SQLAlchemyPersister, partition_key: str) -> int:
    """Bytes (UTF-8 for text) of manifests, values and list chunks of one conversation, summed in the database."""
    refs = select(App.id).where(App.partition_key == partition_key).scalar_subquery()
    size = lambda column: func.coalesce(func.sum(func.length(cast(column, LargeBinary))), 0)  # noqa: E731
    with persister.engine.connect() as conn:
        return sum(conn.execute(select(size(column)).where(table.app_ref.in_(refs)))
                   .scalar_one() for table, column in ((Snapshot, Snapshot.manifest), (StateValue, StateValue.data),
                                                       (ListItem, ListItem.data)))


def test_storage_grows_linearly_and_each_conversation_reports_its_size(recorder):
    store = ConversationStore(recorder)
    app = build_application("grow", persister=recorder, llm=ScriptedModel(), app_id="main")
    window = CHUNK_ITEMS // 2  # turns; each window ends right after its 2 * window messages are sealed
    sizes = []
    for _ in range(4):
        run_turns(app, len(sizes) * window + 1, window)
        sizes.append(store.get("grow").stored_bytes)
        assert sizes[-1] == stored_payload(recorder, "grow")  # the catalog's number is the real one
    growth = [later - earlier for earlier, later in zip(sizes, sizes[1:])]
    assert max(growth) <= 1.1 * min(growth), sizes  # the last turns cost what the earlier ones cost
    raw_per_turn = 2 * 600
    assert max(growth) / window < 3 * raw_per_turn  # and that cost is a small multiple of the text itself
    snapshots = store.snapshots("grow", "main", limit=1000)
    assert sum(s.stored_bytes for s in snapshots) == sizes[-1]


def count_rows(persister: SQLAlchemyPersister, partition_key: str) -> dict[str, int]:
    refs = select(App.id).where(App.partition_key == partition_key).scalar_subquery()
    with persister.engine.connect() as conn:
        counts = {t.__tablename__: conn.execute(select(func.count()).select_from(t).where(t.app_ref.in_(refs))).scalar_one()
                  for t in (Snapshot, StateValue, ListItem)}
        for table in (App, Conversation):
            counts[table.__tablename__] = conn.execute(
                select(func.count()).select_from(table).where(table.partition_key == partition_key)).scalar_one()
    return counts


def database_size(persister: SQLAlchemyPersister) -> int:
    engine = persister.engine
    if engine.dialect.name == "sqlite":
        return os.path.getsize(engine.url.database)
    with engine.connect() as conn:
        return conn.execute(text("SELECT sum(pg_total_relation_size(oid)) FROM pg_class "
                                 "WHERE relkind = 'r' AND relname LIKE 'burrow%'")).scalar_one()


def test_delete_removes_every_row_of_the_conversation_and_vacuum_gives_space_back(recorder):
    store = ConversationStore(recorder)
    for key in ("doomed", "kept"):
        app = build_application(key, persister=recorder, llm=ScriptedModel(), app_id="main")
        run_turns(app, 1, 40)
    fork = build_application("doomed", persister=recorder, llm=ScriptedModel(), app_id="fork",
                             fork_from_app_id="main", fork_from_sequence_id=30)
    run_turns(fork, 100, 2)
    kept_before = count_rows(recorder, "kept")
    doomed = count_rows(recorder, "doomed")
    assert all(doomed.values()) and doomed["burrow_apps"] == 2 and store.get("doomed").stored_bytes > 0
    store.vacuum(full=True)
    before = database_size(recorder)

    assert store.delete("doomed") is True
    assert set(count_rows(recorder, "doomed").values()) == {0}
    assert count_rows(recorder, "kept") == kept_before
    assert recorder.load("kept", "main")["state"]["chat_history"][0]["content"] == text_of("user-1")
    store.vacuum(full=True)
    assert database_size(recorder) < before


def test_sqlite_runs_in_wal_mode_with_sensible_pragmas(sqlite_url):
    persister = SQLAlchemyPersister.from_url(sqlite_url)
    persister.initialize()
    with persister.engine.connect() as conn:
        pragma = lambda name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()  # noqa: E731
        assert (pragma("journal_mode"), pragma("synchronous"), pragma("foreign_keys")) == ("wal", 1, 1)
        assert pragma("busy_timeout") > 0
    persister.engine.dispose()


def test_each_save_is_exactly_one_transaction(recorder):
    events = {"begin": 0, "commit": 0, "rollback": 0}
    for name in events:
        event.listen(recorder.engine, name, lambda *_, n=name: events.__setitem__(n, events[n] + 1))
    per_save = []
    original = SQLAlchemyPersister.save

    def counted(self, *args, **kwargs):  # noqa: ANN001, ANN202
        before = dict(events)
        original(self, *args, **kwargs)
        per_save.append({k: events[k] - before[k] for k in events})

    recorder.save = counted.__get__(recorder)
    app = build_application("tx", persister=recorder, llm=ScriptedModel(), app_id="main")
    run_turns(app, 1, 70)  # crosses a chunk merge (64 items) too
    recorder.forget("tx")  # a save after a cache miss reads the previous state in the same transaction
    run_turns(build_application("tx", persister=recorder, llm=ScriptedModel(), app_id="main"), 71, 1)
    assert len(per_save) == 71 * 3
    assert all(s == {"begin": 1, "commit": 1, "rollback": 0} for s in per_save), per_save


def test_listing_the_catalog_reads_only_its_index(db_url):
    persister = SQLAlchemyPersister.from_url(db_url)
    persister.initialize()
    now = datetime.now(timezone.utc)
    rows = [dict(partition_key=f"c{i:05d}", title=f"title {i}", title_custom=False, created_at=now,
                 updated_at=now, activity=i, message_count=2, latest_app_id="a", stored_bytes=1) for i in range(5000)]
    with persister.engine.begin() as conn:
        conn.execute(insert(Conversation), rows)
        if conn.dialect.name == "postgresql":
            conn.execute(text("ANALYZE burrow_conversations"))
    statements = []
    listener = lambda conn, cursor, statement, params, *_: statements.append((statement, params))  # noqa: E731
    event.listen(persister.engine, "before_cursor_execute", listener)
    page = ConversationStore(persister).list(limit=50)
    event.remove(persister.engine, "before_cursor_execute", listener)
    assert [c.partition_key for c in page] == [f"c{i:05d}" for i in range(4999, 4949, -1)]
    (query, params), = [(s, p) for s, p in statements if "burrow_conversations" in s]
    with persister.engine.connect() as conn:
        explain = "EXPLAIN QUERY PLAN " if conn.dialect.name == "sqlite" else "EXPLAIN "
        plan = " ".join(str(r[-1]) for r in conn.exec_driver_sql(explain + query, params))
    persister.engine.dispose()
    assert "ix_burrow_conversations_pinned_activity" in plan and "snapshot" not in plan.lower(), plan  # pins first
    assert "Sort" not in plan and "TEMP B-TREE" not in plan, plan  # rows come in index order, no sorting
