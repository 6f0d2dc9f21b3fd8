"""Full-text search (schemas 0008 to 0010) on SQLite and PostgreSQL: indexed by the save's transaction, ranked,
snippets with marks, scoped to the owner, odd input never raises, deletion removes rows, rewrites, and
the migration indexes a database written at 0007. Forks: tests/persistence/test_search_forks.py; rows
in distant blocks of ids: tests/persistence/test_search_blocks.py."""
from __future__ import annotations

from datetime import timedelta

import pytest
from alembic import command
from burr.core import State
from sqlalchemy import text

from core.storage import MARK_END, MARK_START, ConversationStore, SearchStore, SQLAlchemyPersister
from core.storage.engine import create_burrow_engine
from core.storage.migrations import HEAD, alembic_config, upgrade
from tests.persistence.test_migrations import revision_of, schema_differences

ODD = ['"', "'", '"unbalanced', "a AND", "OR", "NOT x", "NEAR(a b)", "*", "-x", "(((", ")", "a:b", "col:*",
       "\x00\x01", "🙂🙂", "x" * 5000, "' OR 1=1 --", "\\", "%_", "& | ! <->", ":*", "", "   "]


@pytest.fixture
def persister(db_url: str):
    p = SQLAlchemyPersister.from_url(db_url)
    p.initialize()
    yield p
    p.engine.dispose()


def chat(persister: SQLAlchemyPersister, key: str, messages: list[str], app: str = "main", owner: str = "local",
         **kwargs) -> None:
    """Saves one step per message, each appending it (as the chat graph does)."""
    persister.claim(key, owner)
    history: list[dict] = []
    for seq, content in enumerate(messages):
        history = [*history, {"role": "user" if seq % 2 == 0 else "assistant", "content": content}]
        persister.save(key, app, seq, "human_input", State({"chat_history": history, "__SEQUENCE_ID": seq}),
                       "completed", **(kwargs if seq == 0 else {}))


def undo_0010(conn) -> None:
    """Back to what 0009 left: PostgreSQL's GIN index on tsv, none of 0010's index or functions."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("DROP INDEX IF EXISTS ix_burrow_search_messages_terms"))
        for signature in ("burrow_search_terms(bigint, tsvector)", "burrow_search_query(tsquery, bigint[])",
                          "burrow_search_block(bigint)"):
            conn.execute(text(f"DROP FUNCTION IF EXISTS {signature}"))
        if conn.execute(text("SELECT to_regclass('burrow_search_messages') IS NOT NULL")).scalar():
            conn.execute(text("CREATE INDEX ix_burrow_search_messages_tsv ON burrow_search_messages USING gin (tsv)"))


def rows_of(persister: SQLAlchemyPersister, key: str) -> list[tuple]:
    with persister.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT app_id, idx, content FROM burrow_search_messages WHERE partition_key = :k ORDER BY app_id, idx"),
            {"k": key})]


def test_messages_are_indexed_once_each_and_found_ranked_with_a_snippet(persister):
    chat(persister, "c1", ["tell me about otters", "otters are playful otters", "and beavers?"])
    chat(persister, "c2", ["one mention of otters among many other words here", "ok"])
    assert [r[1] for r in rows_of(persister, "c1")] == [0, 1, 2]
    hits = SearchStore(persister).search("local", "otters", 10)
    assert [h.partition_key for h in hits] == ["c1", "c2"]
    assert hits[0].idx == 1 and hits[0].app_id == "main" and hits[0].role == "assistant"
    assert f"{MARK_START}otters{MARK_END}" in hits[0].snippet.lower()


def test_prefix_of_the_last_word_matches_as_you_type(persister):
    chat(persister, "c1", ["the hippopotamus swims"])
    assert [h.partition_key for h in SearchStore(persister).search("local", "the hippo", 5)] == ["c1"]


def test_search_is_scoped_to_the_owner(persister):
    chat(persister, "mine", ["secret plans"], owner="alice")
    chat(persister, "theirs", ["secret recipes"], owner="bob")
    assert [h.partition_key for h in SearchStore(persister).search("alice", "secret", 5)] == ["mine"]
    assert SearchStore(persister).search("local", "secret", 5) == []


@pytest.mark.parametrize("query", ODD)
def test_odd_queries_never_raise(persister, query):
    chat(persister, "c1", ['quotes " and (parens) NEAR stars * minus -x 🙂'])
    assert isinstance(SearchStore(persister).search("local", query, 5), list)


def test_deleting_a_conversation_removes_its_search_rows(persister):
    chat(persister, "c1", ["zebra crossing"])
    assert SearchStore(persister).search("local", "zebra", 5)
    ConversationStore(persister).delete("c1")
    assert rows_of(persister, "c1") == [] and SearchStore(persister).search("local", "zebra", 5) == []


def test_a_rewritten_history_replaces_its_rows(persister):
    persister.save("c1", "main", 0, "a", State({"chat_history": [{"role": "user", "content": "alpha"}]}), "completed")
    persister.save("c1", "main", 1, "a", State({"chat_history": [{"role": "user", "content": "omega"}]}), "completed")
    assert rows_of(persister, "c1") == [("main", 0, "omega")]
    assert [h.idx for h in SearchStore(persister).search("local", "alpha", 5)] == [None]  # its title only


def test_a_fork_is_found_at_its_own_branch(persister):
    chat(persister, "c1", ["shared start", "first reply"])
    chat(persister, "c1", ["shared start", "walrus reply"], app="fork", forked_from=("main", 0))
    [hit] = SearchStore(persister).search("local", "walrus", 5)
    assert (hit.app_id, hit.idx) == ("fork", 1)


def test_title_matches_without_message_hits(persister):
    chat(persister, "c1", ["hello"])
    ConversationStore(persister).rename("c1", "Quarterly budget")
    [hit] = SearchStore(persister).search("local", "budget", 5)
    assert hit.partition_key == "c1" and hit.idx is None
    [message_hit] = SearchStore(persister).search(None, "hello", 5)
    assert hit.updated_at.utcoffset() == message_hit.updated_at.utcoffset() == timedelta(0)  # UTC, as the catalog's


def test_the_migration_indexes_a_database_written_at_0007(db_url):
    engine = create_burrow_engine(db_url)
    try:
        old = SQLAlchemyPersister(engine)
        old.initialize()
        chat(old, "c1", ["kangaroo facts", "they hop"] * 40)  # > 64 items: a sealed chunk and pending ones
        with engine.begin() as conn:  # back to 0007, as that release left it: no search tables
            conn.execute(text("DROP TABLE burrow_search_messages"))
            undo_0010(conn)
            if engine.dialect.name == "sqlite":
                conn.execute(text("DROP TABLE burrow_search_fts"))
            conn.execute(text("UPDATE burrow_alembic_version SET version_num = '0007'"))
        assert upgrade(engine) == ["0008", "0009", "0010"] and revision_of(engine) == [HEAD]
        assert schema_differences(engine) == []
        fresh = SQLAlchemyPersister(engine)
        assert len(rows_of(fresh, "c1")) == 80
        [hit] = SearchStore(fresh).search("local", "kangaroo", 5)
        assert hit.partition_key == "c1"
    finally:
        engine.dispose()


def test_broken_unicode_and_control_characters_are_indexed_as_clean_text(persister):
    chat(persister, "c1", ["half \ud83d emoji and a nul\x00byte ocelot"])
    [(_, _, content)] = rows_of(persister, "c1")
    assert "\x00" not in content and "ocelot" in content
    assert [h.partition_key for h in SearchStore(persister).search("local", "ocelot", 5)] == ["c1"]


def test_more_uses_in_a_shorter_message_rank_higher_and_none_means_everyones(persister):
    chat(persister, "once", ["a heron " + "and many other words besides " * 6], owner="alice")
    chat(persister, "twice", ["heron heron, " + "and other words " * 6], owner="bob")
    chat(persister, "short", ["herons!"], owner="alice")
    order = [h.partition_key for h in SearchStore(persister).search(None, "heron", 5)]
    assert sorted(order) == ["once", "short", "twice"]
    assert order.index("twice") < order.index("once") and order.index("short") < order.index("once")
    assert [h.partition_key for h in SearchStore(persister).search("alice", "heron", 5)] == ["short", "once"]
