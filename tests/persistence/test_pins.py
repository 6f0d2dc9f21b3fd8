"""Pinned conversations (schema 0006) on SQLite and PostgreSQL: the migration from a database at
0005, pinned rows first in the listing, and its cursor across the pin boundary."""
from __future__ import annotations

import pytest
from alembic import command
from burr.core import State
from sqlalchemy import inspect, text

from core.storage import ConversationStore, SQLAlchemyPersister
from core.storage.catalog import PIN_RANK
from core.storage.engine import create_burrow_engine
from core.storage.migrations import HEAD, alembic_config, upgrade
from tests.persistence.test_migrations import revision_of, schema_differences


@pytest.fixture
def engine(db_url: str):
    engine = create_burrow_engine(db_url)
    yield engine
    engine.dispose()


def save_chat(persister: SQLAlchemyPersister, key: str) -> None:
    state = State({"chat_history": [{"role": "user", "content": f"chat {key}"}], "__SEQUENCE_ID": 0})
    persister.save(key, f"app-{key}", 0, "human_input", state, "completed")


def test_a_database_at_0005_gets_the_pinned_column_and_keeps_its_rows(engine):
    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), "0005")
    assert revision_of(engine) == ["0005"]
    with engine.begin() as conn:  # a conversation as a 0005 release saved it (no pinned column yet)
        conn.execute(text("INSERT INTO burrow_conversations (partition_key, title, title_custom, created_at, "
                          "updated_at, activity, message_count, latest_app_id, stored_bytes) VALUES "
                          "('old', 'Old chat', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 7, 2, 'a', 10)"))
    assert upgrade(engine)[:1] == ["0006"] and upgrade(engine) == [] and revision_of(engine) == [HEAD]
    assert schema_differences(engine) == []
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(engine).get_indexes("burrow_conversations")}
    assert indexes["ix_burrow_conversations_pinned_activity"] == ["pinned", "activity"]
    store = ConversationStore(SQLAlchemyPersister(engine))
    [old] = store.list()
    assert (old.partition_key, old.title, old.message_count, old.pinned) == ("old", "Old chat", 2, False)
    with engine.begin() as conn:  # a 0005 release's insert (it names no pinned) still works at 0006
        conn.execute(text("INSERT INTO burrow_conversations (partition_key, title, title_custom, created_at, "
                          "updated_at, activity, message_count, latest_app_id, stored_bytes) VALUES "
                          "('older', 'By 0005', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 3, 1, 'b', 1)"))
    assert store.get("older").pinned is False


def test_pinned_conversations_come_first_and_every_page_continues_across_the_pins(persister):
    store = ConversationStore(persister)
    keys = [f"c{n:02d}" for n in range(9)]
    for key in keys:
        save_chat(persister, key)
    pinned = {"c01", "c04", "c07"}
    for key in pinned:
        assert store.pin(key, True)
    expected = [k for k in reversed(keys) if k in pinned] + [k for k in reversed(keys) if k not in pinned]
    assert [c.partition_key for c in store.list()] == expected
    for size in (1, 2, 3, 4):  # pages ending on a pinned row, on the boundary and past it
        seen, cursor = [], None
        while page := store.list(limit=size, before_activity=cursor):
            seen += [c.partition_key for c in page]
            cursor = page[-1].cursor
        assert seen == expected, size
    assert store.list(limit=2, before_activity=store.get("c07").cursor)[0].partition_key == "c04"
    assert store.get("c07").cursor == store.get("c07").activity + PIN_RANK < 2 ** 53  # a JavaScript-safe int
    assert store.get("c08").cursor == store.get("c08").activity  # an unpinned cursor is as before pins


def test_unpinning_puts_it_back_by_activity_and_a_new_step_keeps_the_pin(persister):
    store = ConversationStore(persister)
    for key in ("a", "b", "c"):
        save_chat(persister, key)
    store.pin("a", True)
    save_chat(persister, "a2")
    state = persister.load("a", None)["state"].update(**{"__SEQUENCE_ID": 1})
    persister.save("a", "app-a", 1, "human_input", state, "completed")  # the upsert leaves `pinned` alone
    assert store.get("a").pinned and [c.partition_key for c in store.list()][0] == "a"
    assert store.pin("a", False)
    assert [c.partition_key for c in store.list()] == ["a", "a2", "c", "b"]
    store.pin("c", True)
    assert [c.partition_key for c in store.list(search="CHAT A")] == ["a", "a2"]  # search keeps the order rule
    assert [c.partition_key for c in store.list()] == ["c", "a", "a2", "b"]
    assert store.pin("missing", True) is False


def test_the_pinned_first_listing_reads_only_an_index(engine):
    upgrade(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in conn.execute(text(
                "EXPLAIN QUERY PLAN SELECT partition_key FROM burrow_conversations "
                "WHERE (pinned, activity) < (1, 5) ORDER BY pinned DESC, activity DESC LIMIT 20")))
            assert "ix_burrow_conversations_pinned_activity" in plan and "TEMP B-TREE" not in plan, plan
        else:
            conn.execute(text("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off"))
            # an empty table: ask whether the index can serve the order and the cursor at all
            plan = " ".join(r[0] for r in conn.execute(text(
                "EXPLAIN SELECT partition_key FROM burrow_conversations WHERE (pinned, activity) < (true, 5) "
                "ORDER BY pinned DESC, activity DESC LIMIT 20")))
            assert "ix_burrow_conversations_pinned_activity" in plan and "Sort" not in plan, plan
