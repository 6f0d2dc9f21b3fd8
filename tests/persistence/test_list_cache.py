"""The persister's cache of list items already read (core/listcache.py), on SQLite and PostgreSQL.

A load must return exactly what a cache-less load returns, whatever another writer did meanwhile:
appended, rewritten the list, forked, or deleted the conversation and started one with the same ids.
"""
from __future__ import annotations

import json

import pytest
from burr.core import State
from sqlalchemy import event

from core.storage import ConversationStore
from core.storage import SQLAlchemyPersister


def message(i: int) -> dict:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i} " + "é" * (i % 7)}


def save_history(persister: SQLAlchemyPersister, key: str, app_id: str, first_seq: int, histories: list[list]) -> int:
    """Saves one snapshot per history, from `first_seq` on; returns the next sequence id."""
    for offset, history in enumerate(histories):
        state = State({"chat_history": history, "safe": True})
        persister.save(key, app_id, first_seq + offset, "human_input", state, "completed")
    return first_seq + len(histories)


def growing(start: int, stop: int) -> list[list]:
    return [[message(i) for i in range(n + 1)] for n in range(start, stop)]


@pytest.fixture
def other(make_persister) -> SQLAlchemyPersister:
    """A second persister on the same database: another server process, with its own caches."""
    return make_persister()


def chunk_reads(persister: SQLAlchemyPersister) -> list[list]:
    """Records the parameter values of every read of list chunks the persister makes."""
    reads: list[list] = []

    @event.listens_for(persister.engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and "burrow_list_items" in statement:
            reads.append(list(parameters.values() if isinstance(parameters, dict) else parameters))

    return reads


def history_of(persister: SQLAlchemyPersister, key: str, app_id: str | None = "main", seq: int | None = None) -> list:
    return persister.load(key, app_id, seq)["state"]["chat_history"]


def test_a_second_load_reads_only_the_chunks_past_what_the_first_one_read(persister, other):
    nxt = save_history(other, "c", "main", 0, growing(0, 150))
    reads = chunk_reads(persister)
    assert history_of(persister, "c") == [message(i) for i in range(150)]
    assert len(reads) == 1
    save_history(other, "c", "main", nxt, growing(150, 153))
    assert history_of(persister, "c") == [message(i) for i in range(153)]
    assert len(reads) == 2 and 150 in reads[1]  # asked only for chunks ending past item 150
    assert history_of(persister, "c", seq=70) == [message(i) for i in range(71)]
    assert len(reads) == 2  # an older snapshot of the same list is served from what was read


def test_rewrites_forks_and_appends_by_another_writer_are_seen(persister, other):
    nxt = save_history(other, "c", "main", 0, growing(0, 80))
    assert len(history_of(persister, "c")) == 80
    rewritten = [message(1000), *[message(i) for i in range(1, 80)]]  # the first item changed: a new generation
    nxt = save_history(other, "c", "main", nxt, [rewritten, [*rewritten, message(80)]])
    assert history_of(persister, "c") == [*rewritten, message(80)]
    fork = [message(i) for i in range(40)] + [message(2000)]
    other.save("c", "fork", 40, "human_input", State({"chat_history": fork, "safe": True}), "completed",
               forked_from=("main", 39))
    assert history_of(persister, "c", app_id=None) == fork  # the newest branch, not main's cached items
    assert history_of(persister, "c", seq=79) == [message(i) for i in range(80)]  # the old generation is intact


def test_a_deleted_conversation_recreated_with_the_same_ids_never_returns_old_items(persister, other):
    save_history(other, "c", "main", 0, growing(0, 70))
    assert len(history_of(persister, "c")) == 70
    assert ConversationStore(other).delete("c")
    replacement = [{"role": "user", "content": f"new {i}"} for i in range(3)]
    save_history(other, "c", "main", 0, [replacement[:1], replacement[:2], replacement])
    assert history_of(persister, "c") == replacement  # the database may even hand out the same row id


def test_the_cache_keeps_within_its_budget_and_a_zero_budget_disables_it(make_persister, other):
    save_history(other, "a", "main", 0, growing(0, 100))
    save_history(other, "b", "main", 0, growing(0, 100))
    one_list = len(json.dumps([message(i) for i in range(100)], ensure_ascii=False).encode())
    small = make_persister(list_cache_bytes=int(one_list * 1.5))
    off = make_persister(list_cache_bytes=0)
    for key in ("a", "b", "a"):
        assert history_of(small, key) == history_of(off, key) == [message(i) for i in range(100)]
        assert 0 < small.list_cache.size <= small.list_cache.max_bytes
    assert off.list_cache.size == 0


def test_loaded_lists_are_copies_so_changing_one_does_not_change_the_next_load(persister):
    save_history(persister, "c", "main", 0, growing(0, 10))
    first = history_of(persister, "c")
    first.append({"role": "user", "content": "not saved"})
    assert history_of(persister, "c") == [message(i) for i in range(10)]


@pytest.mark.postgres
def test_on_postgresql_chunks_travel_compressed_in_the_binary_format(pg_url):
    """bytea in psycopg's text format is hex: twice the bytes on the wire and a decode on arrival."""
    persister = SQLAlchemyPersister.from_url(pg_url, list_cache_bytes=0)
    persister.initialize()
    formats: list[int] = []

    @event.listens_for(persister.engine, "after_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("SELECT") and "burrow_list_items" in statement:
            formats.append(cursor.pgresult.fformat(2))  # the data column's format: 0 text, 1 binary

    try:
        save_history(persister, "c", "main", 0, growing(0, 130))
        assert history_of(persister, "c") == [message(i) for i in range(130)]
        assert formats == [1]
        with persister.engine.connect() as conn:
            codecs = [bytes(c) for c in conn.exec_driver_sql("SELECT substr(data, 1, 1) FROM burrow_list_items").scalars()]
        assert codecs.count(b"4") >= 2  # the two sealed chunks of 64 messages are compressed
    finally:
        persister.engine.dispose()
