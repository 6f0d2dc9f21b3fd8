"""Search and forks (schema 0009), on SQLite and PostgreSQL: a fork indexes only what it added beyond
its fork point, so a message is one row per conversation; rewrites before or after the fork point,
shrinking histories, hits once per conversation and the candidate bound; any script of appends,
rewrites, shrinks and forks keeps every row true to its branch and every message findable; and a
database written at 0008 (forks indexed whole, FTS5 holding a copy of the text) upgrades to 0009."""
from __future__ import annotations

import uuid

import pytest
from burr.core import State
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import text

from core.storage import ConversationStore, SearchStore, SQLAlchemyPersister
from core.storage import search as search_module
from core.storage.engine import create_burrow_engine
from core.storage.migrations import HEAD, upgrade
from core.text import plain_text
from tests.persistence.test_migrations import revision_of, schema_differences
from tests.persistence.test_search import chat, rows_of, undo_0010


def msg(i: int, content: str) -> dict:
    return {"role": "user" if i % 2 == 0 else "assistant", "content": content}


def save(p: SQLAlchemyPersister, key: str, app: str, seq: int, history: list[str], **kwargs) -> None:
    state = State({"chat_history": [msg(i, c) for i, c in enumerate(history)], "__SEQUENCE_ID": seq})
    p.save(key, app, seq, "human_input", state, "completed", **kwargs)


def test_a_fork_indexes_only_what_it_added(persister):
    chat(persister, "c1", ["shared start", "first reply", "walrus question"])
    save(persister, "c1", "fork", 1, ["shared start", "first reply"], forked_from=("main", 1))
    save(persister, "c1", "fork", 2, ["shared start", "first reply", "narwhal question"])
    assert [(a, i) for a, i, _ in rows_of(persister, "c1")] == [("fork", 2), ("main", 0), ("main", 1), ("main", 2)]
    [hit] = SearchStore(persister).search("local", "shared", 5)
    assert (hit.app_id, hit.idx) == ("main", 0)
    [hit] = SearchStore(persister).search("local", "narwhal", 5)
    assert (hit.app_id, hit.idx) == ("fork", 2)


def test_a_fork_of_a_fork_finds_each_message_once(persister):
    chat(persister, "c1", ["alpha one", "beta two"])
    save(persister, "c1", "f1", 1, ["alpha one", "beta two"], forked_from=("main", 1))
    save(persister, "c1", "f1", 2, ["alpha one", "beta two", "gamma three"])
    save(persister, "c1", "f2", 2, ["alpha one", "beta two", "gamma three"], forked_from=("f1", 2))
    save(persister, "c1", "f2", 3, ["alpha one", "beta two", "gamma three", "delta four"])
    assert [(a, i) for a, i, _ in rows_of(persister, "c1")] == [("f1", 2), ("f2", 3), ("main", 0), ("main", 1)]


def test_a_parent_rewritten_after_the_fork_hands_its_old_messages_down(persister):
    chat(persister, "c1", ["pelican start", "pelican reply", "more"])
    save(persister, "c1", "fork", 2, ["pelican start", "pelican reply", "more"], forked_from=("main", 2))
    save(persister, "c1", "main", 3, ["pelican start", "heron instead"])  # main rewritten from index 1
    rows = rows_of(persister, "c1")
    assert ("fork", 1, "pelican reply") in rows and ("fork", 2, "more") in rows
    assert ("main", 1, "heron instead") in rows and ("main", 2, "more") not in rows
    assert [(h.app_id, h.idx) for h in SearchStore(persister).search("local", "pelican reply", 5)] == [("fork", 1)]


def test_a_fork_rewritten_before_its_fork_point_indexes_its_own_messages(persister):
    chat(persister, "c1", ["ibis start", "ibis reply"])
    save(persister, "c1", "fork", 1, ["ibis start", "ibis reply"], forked_from=("main", 1))
    save(persister, "c1", "fork", 2, ["crane start"])
    assert rows_of(persister, "c1") == [("fork", 0, "crane start"), ("main", 0, "ibis start"), ("main", 1, "ibis reply")]


def test_a_history_that_shrinks_loses_the_rows_past_its_end(persister):
    chat(persister, "c1", ["keep this", "drop that", "and this"])
    save(persister, "c1", "main", 3, ["keep this"])
    assert rows_of(persister, "c1") == [("main", 0, "keep this")]
    assert SearchStore(persister).search("local", "drop", 5) == []


def test_hits_are_one_per_conversation_and_the_candidates_are_the_newest(persister, monkeypatch):
    for n in range(6):
        chat(persister, f"c{n}", ["common word here", "common again"])
    hits = SearchStore(persister).search("local", "common", 10)
    assert sorted(h.partition_key for h in hits) == [f"c{n}" for n in range(6)]
    monkeypatch.setattr(search_module, "CANDIDATES", 4)  # a word in more messages than the bound
    hits = SearchStore(persister).search("local", "again", 10)  # not in the titles (the first messages)
    assert sorted(h.partition_key for h in hits) == ["c2", "c3", "c4", "c5"]  # the 4 newest matching messages


# ---- any script keeps the index true and complete --------------------------------------------------
WORDS = ["otter", "heron", "kelp", ""]
ops = st.lists(st.tuples(st.sampled_from(["append", "rewrite", "shrink", "fork"]), st.integers(0, 50),
                         st.integers(0, 50), st.sampled_from(WORDS)), min_size=1, max_size=14)


def run_script(p: SQLAlchemyPersister, key: str, script: list[tuple]) -> dict[str, list[str]]:
    """Plays the script; returns each branch's latest history."""
    saved: dict[str, list[tuple[int, list[str]]]] = {"main": []}
    save(p, key, "main", 0, ["root otter"])
    saved["main"].append((0, ["root otter"]))
    for kind, a, b, word in script:
        app = sorted(saved)[a % len(saved)]
        seq, history = saved[app][-1]
        if kind == "fork":
            seq, history = saved[app][b % len(saved[app])]
            app_new = f"f{len(saved)}"
            save(p, key, app_new, seq, history, forked_from=(app, seq))
            saved[app_new] = [(seq, history)]
            continue
        if kind == "append":
            history = [*history, f"{word} {seq}".strip() if word else ""]
        elif kind == "rewrite":
            history = [*history[:b % (len(history) + 1)], word]
        else:
            history = history[:b % (len(history) + 1)]
        save(p, key, app, seq + 1, history)
        saved[app].append((seq + 1, history))
    return {app: steps[-1][1] for app, steps in saved.items()}


def assert_index_true_and_complete(p: SQLAlchemyPersister, key: str, latest: dict[str, list[str]]) -> None:
    parents = {b.app_id: b.forked_from_app_id for b in ConversationStore(p).branches(key)}
    rows = {(app, idx): content for app, idx, content in rows_of(p, key)}
    for (app, idx), content in rows.items():  # every row is a message its branch holds now
        assert idx < len(latest[app]) and plain_text(latest[app][idx]) == content, (app, idx)
    for app, history in latest.items():  # every message with text is found at its branch or an ancestor
        for idx, content in enumerate(history):
            chain, at = [], app
            while at is not None:
                chain.append(at)
                at = parents[at]
            assert not content or any(rows.get((a, idx)) == content for a in chain), (app, idx, content)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=ops)
def test_any_script_keeps_the_index_true_and_complete(persister, script):
    note(repr(script))
    key = f"p-{uuid.uuid4().hex[:8]}"
    latest = run_script(persister, key, script)
    assert_index_true_and_complete(persister, key, latest)
    fresh = SQLAlchemyPersister(persister.engine)  # another process: nothing cached
    assert_index_true_and_complete(fresh, key, latest)


# ---- 0008 -> 0009 ----------------------------------------------------------------------------------
def as_0008_left_it(engine, key: str, latest: dict[str, list[str]]) -> None:
    """What 0008 stored: every branch's whole history as rows, FTS5 with its own copy, an expression index."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM burrow_search_messages"))
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TABLE burrow_search_fts"))
        else:
            undo_0010(conn)
            conn.execute(text("DROP INDEX ix_burrow_search_messages_tsv"))
            conn.execute(text("ALTER TABLE burrow_search_messages DROP COLUMN tsv"))
        for app, history in latest.items():
            for idx, content in enumerate(history):
                conn.execute(text("INSERT INTO burrow_search_messages (partition_key, app_id, idx, role, content) "
                                  "VALUES (:k, :a, :i, :r, :c)"), {"k": key, "a": app, "i": idx,
                                                                    "r": msg(idx, "")["role"], "c": content})
        if engine.dialect.name == "sqlite":
            conn.execute(text("CREATE VIRTUAL TABLE burrow_search_fts USING fts5(content, "
                              "tokenize = 'unicode61 remove_diacritics 2')"))
            conn.execute(text("INSERT INTO burrow_search_fts (rowid, content) SELECT id, content FROM burrow_search_messages"))
        else:
            conn.execute(text("CREATE INDEX ix_burrow_search_messages_tsv ON burrow_search_messages "
                              "USING gin (to_tsvector('simple', content))"))
        conn.execute(text("UPDATE burrow_alembic_version SET version_num = '0008'"))


def test_a_database_written_at_0008_keeps_each_message_once(db_url):
    engine = create_burrow_engine(db_url)
    try:
        p = SQLAlchemyPersister(engine)
        p.initialize()
        chat(p, "c1", ["puffin start", "puffin reply", "main goes on"])
        save(p, "c1", "fork", 1, ["puffin start", "puffin reply"], forked_from=("main", 1))
        save(p, "c1", "fork", 2, ["puffin start", "puffin reply", "fork goes on"])
        save(p, "c1", "late", 2, ["puffin start", "puffin reply", "main goes on"], forked_from=("main", 2))
        save(p, "c1", "late", 3, ["puffin start", "changed below the fork point"])
        latest = {"main": ["puffin start", "puffin reply", "main goes on"],
                  "fork": ["puffin start", "puffin reply", "fork goes on"],
                  "late": ["puffin start", "changed below the fork point"]}
        as_0008_left_it(engine, "c1", latest)
        assert upgrade(engine) == ["0009", "0010"] and revision_of(engine) == [HEAD]
        assert schema_differences(engine) == []
        fresh = SQLAlchemyPersister(engine)
        assert rows_of(fresh, "c1") == [("fork", 2, "fork goes on"), ("late", 1, "changed below the fork point"),
                                        ("main", 0, "puffin start"), ("main", 1, "puffin reply"),
                                        ("main", 2, "main goes on")]
        assert [(h.app_id, h.idx) for h in SearchStore(fresh).search("local", "puffin reply", 5)] == [("main", 1)]
        save(fresh, "c1", "fork", 3, ["puffin start", "puffin reply", "fork goes on", "a skua"])  # saves go on
        assert [(h.app_id, h.idx) for h in SearchStore(fresh).search("local", "skua", 5)] == [("fork", 3)]
        assert_index_true_and_complete(fresh, "c1", {**latest, "fork": [*latest["fork"], "a skua"]})
    finally:
        engine.dispose()
