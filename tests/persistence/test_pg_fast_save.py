"""PostgreSQL's one-statement save (rows.fast_save): taken for the usual save, the very same rows and
catalog as the general path, and still a conflict when another writer got there first.

The fast path writes only if the branch is still at the step this process saved last; when it is not,
the general path decides under the branch's lock, exactly as it did before the fast path existed.
"""
from __future__ import annotations

import json
import random
import threading
import time

import pytest
from burr.core import State
from sqlalchemy import create_engine, event, text

from core.errors import SnapshotConflictError
from core.storage import AsyncSQLAlchemyPersister, ConversationStore, SQLAlchemyPersister
from core.storage.codec import CHUNK_ITEMS
from core.storage.engine import async_url
from tests.support.loops import LoopThread

pytestmark = pytest.mark.postgres


class Statements:
    """The statements an engine sends (SQLAlchemy's before_cursor_execute; the pool's ping is not one)."""

    def __init__(self, engine) -> None:
        self.sent: list[str] = []
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany) -> None:  # noqa: ANN001
        self.sent.append(statement.split(None, 1)[0].upper())

    def during(self, work) -> list[str]:
        start = len(self.sent)
        work()
        return self.sent[start:]


@pytest.fixture
def make_persister(pg_url):
    """Initialized persisters on PostgreSQL only (the conftest's fixture runs on both databases); each one
    is another process's view of the database (its own caches and connections)."""
    made: list[SQLAlchemyPersister] = []

    def make() -> SQLAlchemyPersister:
        store = SQLAlchemyPersister.from_url(pg_url)
        store.initialize()
        made.append(store)
        return store

    yield make
    for store in made:
        store.engine.dispose()


@pytest.fixture
def fast(make_persister) -> SQLAlchemyPersister:
    return make_persister()


@pytest.fixture
def general(make_persister) -> SQLAlchemyPersister:
    store = make_persister()
    store.fast_saves = False
    return store


def chat_states(seed: int, steps: int) -> list[tuple[str, dict]]:
    """(status, state) per step: a chat growing past several chunk merges, big and small values that
    change or not, an in-place edit of an earlier message, a list rewritten, a key removed, a failure."""
    rng = random.Random(seed)
    history: list[dict] = []
    states = []
    for seq in range(steps):
        history.append({"role": rng.choice(["user", "assistant"]), "content": f"message {seq} " * rng.randint(1, 40)})
        if seq % 17 == 16:
            history[rng.randrange(len(history))]["content"] = f"edited at {seq}"  # in place: a new generation
        state = {"chat_history": [dict(m) for m in history], "turn": seq // 3, "prompt": "p" * 300}
        if seq % 5:
            state["notes"] = "n" * (150 + seq // 10)  # big, changes every 10 steps
        if seq % 23 == 22:
            state["scratch"] = [rng.randint(0, 9) for _ in range(rng.randint(0, 5))]  # a list of numbers
        states.append(("failed" if seq % 29 == 28 else "completed", state))
    return states


def save_all(persister: SQLAlchemyPersister, key: str, states: list[tuple[str, dict]], app_id: str = "main",
             first: int = 0, **kwargs) -> None:
    for seq, (status, state) in enumerate(states, start=first):
        persister.save(key, app_id, seq, f"step{seq % 3}", State(state), status, **kwargs)


_BRANCH = "JOIN burrow_apps a ON a.id = t.app_ref WHERE a.partition_key = :k"
_NEWEST = "(SELECT s.sequence_id FROM burrow_snapshots s WHERE s.id = {})"  # activity: the id of the newest step
_ROWS = {
    "apps": "SELECT app_id, last_sequence_id, forked_from_app_id, forked_from_sequence_id, "
            f"{_NEWEST.format('a.activity')} FROM burrow_apps a WHERE a.partition_key = :k ORDER BY 1",
    "snapshots": f"SELECT a.app_id, sequence_id, position, status, manifest, stored_bytes, error "
                 f"FROM burrow_snapshots t {_BRANCH} ORDER BY 1, 2",
    "values": f"SELECT a.app_id, key, sequence_id, data FROM burrow_values t {_BRANCH} ORDER BY 1, 2, 3",
    "chunks": f"SELECT a.app_id, key, generation, idx, item_count, data FROM burrow_list_items t {_BRANCH} "
              "ORDER BY 1, 2, 3, 4",
    "catalog": f"SELECT title, title_custom, message_count, latest_app_id, stored_bytes, {_NEWEST.format('c.activity')} "
               "FROM burrow_conversations c WHERE partition_key = :k",
    # one clock per save: the newest snapshot, its branch and the catalog row carry the same time
    "clocks agree": "SELECT s.created_at = a.updated_at AND s.created_at = c.updated_at FROM burrow_conversations c "
                    "JOIN burrow_snapshots s ON s.id = c.activity JOIN burrow_apps a ON a.id = s.app_ref "
                    "WHERE c.partition_key = :k",
}


def stored(url: str, key: str) -> dict:
    """Every row a conversation has, without surrogate ids and clocks (activities as the step they point at)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {name: [tuple(r) for r in conn.execute(text(sql), {"k": key})] for name, sql in _ROWS.items()}
    finally:
        engine.dispose()


def loads(url: str, key: str, app_id: str, steps: range) -> list[str]:
    """Each step as a fresh process loads it, as JSON."""
    fresh = SQLAlchemyPersister.from_url(url)
    try:
        return [json.dumps(fresh.load(key, app_id, seq)["state"].get_all(), sort_keys=True) for seq in steps]
    finally:
        fresh.engine.dispose()


def test_the_usual_save_is_one_statement_and_the_general_path_is_not(fast, general):
    fast_sent, general_sent = Statements(fast.engine), Statements(general.engine)
    history = [{"role": "user", "content": "hello"}]
    first = fast_sent.during(lambda: fast.save("c1", "main", 0, "human_input", State({"chat_history": history}),
                                               "completed"))
    assert len(first) >= 5, first  # a first save of a branch takes the general path (it creates the branch)
    for seq in range(1, 10):
        history = [*history, {"role": "assistant", "content": f"reply {seq}"}]
        sent = fast_sent.during(lambda: fast.save("c1", "main", seq, "ai_response", State({"chat_history": history}),
                                                  "completed"))
        assert sent == ["WITH"], (seq, sent)
        sent = general_sent.during(lambda: general.save("c2", "main", seq - 1, "ai_response",
                                                        State({"chat_history": history}), "completed"))
        assert len(sent) >= 5 and "WITH" not in sent, (seq, sent)


def test_a_chunk_merge_takes_the_general_path(fast):
    sent = Statements(fast.engine)
    history: list[dict] = []
    kinds = []
    for seq in range(CHUNK_ITEMS + 2):
        history = [*history, {"role": "user", "content": f"m{seq}"}]
        kinds.append(sent.during(lambda: fast.save("c1", "main", seq, "s", State({"chat_history": history}),
                                                   "completed")))
    merged = [seq for seq, statements in enumerate(kinds) if statements != ["WITH"]]
    assert merged == [0, CHUNK_ITEMS - 1], merged  # the first save, and the one that sealed a chunk
    assert "DELETE" in kinds[CHUNK_ITEMS - 1]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_same_rows_catalog_and_loads_as_the_general_path(fast, general, pg_url, seed):
    states = chat_states(seed, 150)
    fork = chat_states(seed + 100, 20)
    for store, key in ((fast, "fast"), (general, "general")):
        save_all(store, key, states)
        save_all(store, key, fork, app_id="fork", first=40, forked_from=("main", 39))
        ConversationStore(store).rename(key, "named") if seed == 2 else None
        save_all(store, key, chat_states(seed + 200, 5), first=150)  # after the rename (kept) and the fork
    assert stored(pg_url, "fast") == stored(pg_url, "general")
    assert stored(pg_url, "fast")["clocks agree"] == [(True,)]
    expected = [json.dumps(state, sort_keys=True) for _, state in states + chat_states(seed + 200, 5)]
    assert loads(pg_url, "fast", "main", range(155)) == loads(pg_url, "general", "main", range(155)) == expected
    assert loads(pg_url, "fast", "fork", range(40, 60)) == [json.dumps(s, sort_keys=True) for _, s in fork]


def test_another_writer_saved_the_same_step(make_persister, pg_url):
    ours, theirs = make_persister(), make_persister()
    save_all(ours, "c1", [("completed", {"chat_history": [{"role": "user", "content": "hi"}]})])
    theirs.save("c1", "main", 1, "ai_response", State({"chat_history": [{"role": "user", "content": "theirs"}]}),
                "completed")
    before = stored(pg_url, "c1")
    with pytest.raises(SnapshotConflictError, match="already saved by another writer"):
        ours.save("c1", "main", 1, "ai_response", State({"chat_history": [{"role": "user", "content": "ours"}]}),
                  "completed")
    assert stored(pg_url, "c1") == before  # nothing of ours written
    assert theirs.load("c1", "main")["state"]["chat_history"] == [{"role": "user", "content": "theirs"}]


def test_another_writer_moved_the_branch_past_our_step(make_persister, pg_url):
    ours, theirs = make_persister(), make_persister()
    save_all(ours, "c1", [("completed", {"n": 0})])
    save_all(theirs, "c1", [("completed", {"n": 1}), ("completed", {"n": 2})], first=1)
    with pytest.raises(SnapshotConflictError):
        ours.save("c1", "main", 2, "s", State({"n": 99}), "completed")
    assert SQLAlchemyPersister.from_url(pg_url).load("c1", "main")["state"]["n"] == 2


def test_another_writer_saved_an_earlier_step_then_ours_goes_on_top_as_before(make_persister, pg_url):
    """The general path's rule (a conflict only for a step already saved), kept when the guard misses."""
    ours, theirs = make_persister(), make_persister()
    history = [{"role": "user", "content": "hi"}]
    save_all(ours, "c1", [("completed", {"chat_history": history, "v": "x" * 300})])
    theirs_history = [*history, {"role": "assistant", "content": "from them"}]
    theirs.save("c1", "main", 1, "s", State({"chat_history": theirs_history, "v": "y" * 300}), "completed")
    ours_history = [*theirs_history, {"role": "user", "content": "ours"}]
    ours.save("c1", "main", 2, "s", State({"chat_history": ours_history, "v": "y" * 300}), "completed")
    assert loads(pg_url, "c1", "main", range(2, 3))[0] == json.dumps({"chat_history": ours_history, "v": "y" * 300},
                                                           sort_keys=True)


def test_a_writer_that_commits_while_our_save_waits_for_the_branch_wins(make_persister, pg_url):
    """The race itself: their transaction holds the branch row when our statement arrives; once they
    commit step 1, our guarded UPDATE finds the branch moved and writes nothing (then: conflict)."""
    ours, theirs = make_persister(), make_persister()
    save_all(ours, "c1", [("completed", {"n": 0})])
    save_all(theirs, "c1", [("completed", {"n": 0})], app_id="warm")  # their connection and statements ready
    holding, release, outcome = threading.Event(), threading.Event(), {}

    def their_save(conn) -> None:
        theirs._write(conn, "c1", "main", 1, "s", {"n": "theirs"}, "completed", None)
        holding.set()
        release.wait(10)

    def our_save() -> None:
        try:
            ours.save("c1", "main", 1, "s", State({"n": "ours"}), "completed")
            outcome["result"] = "saved"
        except SnapshotConflictError:
            outcome["result"] = "conflict"

    writer = threading.Thread(target=lambda: theirs.database.write(their_save))
    writer.start()
    assert holding.wait(10)
    saving = threading.Thread(target=our_save)
    saving.start()
    time.sleep(0.5)
    assert saving.is_alive()  # waiting for their row lock
    release.set()
    writer.join(10)
    saving.join(10)
    assert outcome == {"result": "conflict"}
    assert SQLAlchemyPersister.from_url(pg_url).load("c1", "main")["state"]["n"] == "theirs"
    assert [r[1] for r in stored(pg_url, "c1")["snapshots"] if r[0] == "main"] == [0, 1]


def test_the_async_persister_takes_it_too_inside_its_transaction(pg_url):
    persister = AsyncSQLAlchemyPersister.from_url(str(async_url(pg_url)))
    runner = LoopThread()
    try:
        runner.run(persister.initialize())
        sent = Statements(persister.engine.sync_engine)
        history = [{"role": "user", "content": "hello"}]
        runner.run(persister.save("c1", "main", 0, "s", State({"chat_history": history}), "completed"))
        history = [*history, {"role": "assistant", "content": "reply"}]
        assert sent.during(lambda: runner.run(persister.save("c1", "main", 1, "s", State({"chat_history": history}),
                                                             "completed"))) == ["WITH"]
        assert SQLAlchemyPersister.from_url(pg_url).load("c1", "main")["state"]["chat_history"] == history
    finally:
        runner.run(persister.cleanup())
        runner.close()
