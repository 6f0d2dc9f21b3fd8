"""Search over rows far apart in id (schema 0010): PostgreSQL's index keys each word by its block of
65,536 ids and search asks the newest blocks first, after reading the newest RECENT rows directly.
Ids are pushed into distant blocks by moving the id sequence (SQLite has no blocks: the same
assertions hold there, as one index). Also the 0009 -> 0010 migration on a database built as 0009 left it.
"""
from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from core.storage import SearchStore, SQLAlchemyPersister
from core.storage import search as search_module
from core.storage.engine import create_burrow_engine
from core.storage.migrations import HEAD, upgrade
from tests.persistence.test_migrations import revision_of, schema_differences
from tests.persistence.test_search import chat, persister, undo_0010  # noqa: F401 - persister: a fixture

BLOCK = 1 << 16


def jump_ids(engine: Engine, block: int) -> None:
    """The next search row gets the first id of `block` (PostgreSQL; SQLite's ids just go on)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT setval(pg_get_serial_sequence('burrow_search_messages', 'id'), :v, false)"),
                         {"v": max(block * BLOCK, 1)})


def spread(p: SQLAlchemyPersister) -> None:
    """Conversations in blocks 0, 3, 9 and 9 (the newest), each message naming its place."""
    for key, block, messages in (("old", 0, ["karst puffin", "wonderful day"]),
                                 ("mid", 3, ["karma puffin", "day wonderful"]),
                                 ("new", 9, ["puffin karaoke", "nothing here"]),
                                 ("newest", None, ["just chatter", "more chatter"])):
        if block is not None:
            jump_ids(p.engine, block)
        chat(p, key, messages)


def found(p: SQLAlchemyPersister, query: str, owner: str | None = "local") -> list[str]:
    return [h.partition_key for h in SearchStore(p).search(owner, query, 10) if h.idx is not None]


@pytest.mark.parametrize("recent", [0, 1, 3, 8192])
def test_matches_in_every_block_are_found_whatever_is_read_directly(persister, monkeypatch, recent):
    monkeypatch.setattr(search_module, "RECENT", recent)
    spread(persister)
    assert sorted(found(persister, "puffin")) == ["mid", "new", "old"]
    assert sorted(found(persister, "kar")) == ["mid", "new", "old"]  # a prefix, in three blocks
    assert found(persister, "karst") == ["old"] and found(persister, "chatter") == ["newest"]
    assert found(persister, "zebra") == []


@pytest.mark.parametrize("recent", [0, 2])
def test_the_candidates_are_the_newest_matches_across_blocks(persister, monkeypatch, recent):
    monkeypatch.setattr(search_module, "RECENT", recent)
    monkeypatch.setattr(search_module, "CANDIDATES", 2)
    spread(persister)
    assert sorted(found(persister, "puffin")) == ["mid", "new"]  # block 0's is the third newest


def test_a_phrase_inside_a_word_matches_in_order_only(persister, monkeypatch):
    monkeypatch.setattr(search_module, "RECENT", 0)  # everything through the blocks' index
    spread(persister)
    assert found(persister, "wonderful_day") == ["old"]  # "day wonderful" in block 3 is not the phrase


def test_only_the_owners_rows_count_in_every_block(persister, monkeypatch):
    monkeypatch.setattr(search_module, "RECENT", 1)
    spread(persister)
    jump_ids(persister.engine, 12)
    chat(persister, "theirs", ["puffin again", "puffin"], owner="someone-else")
    assert sorted(found(persister, "puffin")) == ["mid", "new", "old"]
    assert found(persister, "puffin", owner="someone-else") == ["theirs"]
    assert sorted(found(persister, "puffin", owner=None)) == ["mid", "new", "old", "theirs"]


def test_an_empty_index_finds_nothing(persister):
    assert SearchStore(persister).search("local", "puffin", 5) == []


def test_a_database_at_0009_gets_the_block_index(db_url):
    engine = create_burrow_engine(db_url)
    try:
        p = SQLAlchemyPersister(engine)
        p.initialize()
        spread(p)
        with engine.begin() as conn:
            undo_0010(conn)
            conn.execute(text("UPDATE burrow_alembic_version SET version_num = '0009'"))
        assert upgrade(engine) == ["0010"] and revision_of(engine) == [HEAD]
        assert schema_differences(engine) == []
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                indexes = set(conn.execute(text(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'burrow_search_messages'")).scalars())
            assert "ix_burrow_search_messages_terms" in indexes and "ix_burrow_search_messages_tsv" not in indexes
        fresh = SQLAlchemyPersister(engine)
        assert sorted(found(fresh, "puffin")) == ["mid", "new", "old"]
        jump_ids(engine, 20)
        chat(fresh, "later", ["a puffin after the upgrade", "ok"])  # saves go on into a new block
        assert sorted(found(fresh, "puffin")) == ["later", "mid", "new", "old"]
    finally:
        engine.dispose()
