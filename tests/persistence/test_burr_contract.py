"""Burr's persister contract, checked the way Burr's own test suite checks its persisters.

The cases follow apache/burr's tests: `tests/core/test_persistence.py` (SQLitePersister and the
in-memory persister), `tests/integrations/persisters/` (PostgreSQL, Redis, MongoDB, aiosqlite:
save/load, list_app_ids, unknown keys, is_initialized on a new connection, pickling the persister),
and the application tests that drive a persister through `ApplicationBuilder.initialize_from`
(`tests/core/test_application.py`, `tests/test_end_to_end.py`, `tests/tracking/...`: resuming,
`fork_from_app_id` / `fork_from_sequence_id` / `fork_from_partition_key`). Here they run against
`SQLAlchemyPersister` on a SQLite file and on PostgreSQL (the `db_url` fixture), written for this
project. The async-application cases live with the async persister's tests.

Where Burrow differs from Burr on purpose, the test asserts Burrow's behaviour and its docstring
says how Burr's SQLitePersister behaves instead (checked against it in the same test where cheap).
"""
from __future__ import annotations

import pickle
import sqlite3
from datetime import datetime

import pytest
from burr.core import ApplicationBuilder, State, action
from burr.core.persistence import SQLitePersister
from burr.integrations.serde import pickle as burr_pickle

from core.errors import SnapshotConflictError, StorageError
from core.storage import SQLAlchemyPersister


@pytest.fixture
def fresh(make_persister):
    """Another process's view of the same database (its own caches), made on demand."""
    return make_persister


def burr_sqlite() -> SQLitePersister:
    """Burr's own SQLite persister, as the reference where our behaviour differs on purpose."""
    reference = SQLitePersister(db_path=":memory:", table_name="burr_reference")
    reference.initialize()
    return reference


# ---- tests/core/test_persistence.py and tests/integrations/persisters/* ----------------------------
def test_initialize_creates_the_schema_and_a_new_partition_lists_nothing(db_url):
    persister = SQLAlchemyPersister.from_url(db_url)
    try:
        persister.initialize()
        assert persister.list_app_ids("partition_key") == []
    finally:
        persister.engine.dispose()


def test_is_initialized_is_false_before_initialize_and_true_after_also_on_a_new_connection(db_url):
    first = SQLAlchemyPersister.from_url(db_url)
    second = SQLAlchemyPersister.from_url(db_url)
    try:
        assert first.is_initialized() is False
        first.initialize()
        assert first.is_initialized() is True
        assert second.is_initialized() is True  # asked of the database, not remembered from initialize()
    finally:
        first.engine.dispose()
        second.engine.dispose()


def test_an_uninitialized_persister_is_refused_by_burrs_builder_and_raises_a_runtime_error(db_url):
    """Burr's builder refuses a persister whose is_initialized() is False (RuntimeError). Called anyway,
    ours raises StorageError (a RuntimeError, like Burr's SQLitePersister's "no such table" error)."""
    persister = SQLAlchemyPersister.from_url(db_url)
    try:
        with pytest.raises(RuntimeError, match="Uninitialized persister"):
            ApplicationBuilder().with_actions(ask=ask, answer=answer).with_transitions(("ask", "answer")) \
                .with_entrypoint("ask").with_state(count=0, chat_history=[]).with_state_persister(persister).build()
        for call in (lambda: persister.load("pk", "app"), lambda: persister.list_app_ids("pk"),
                     lambda: persister.save("pk", "app", 0, "ask", State({"k": 1}), "completed")):
            with pytest.raises(StorageError) as caught:
                call()
            assert isinstance(caught.value, RuntimeError)
    finally:
        persister.engine.dispose()


def test_saves_and_loads_a_state(persister):
    persister.save("partition_key", "app_id", 1, "position", State({"key": "value"}), "status")
    loaded = persister.load("partition_key", "app_id")
    assert loaded["state"] == State({"key": "value"})
    assert set(loaded) == {"partition_key", "app_id", "sequence_id", "position", "state", "created_at", "status"}
    assert (loaded["partition_key"], loaded["app_id"], loaded["sequence_id"]) == ("partition_key", "app_id", 1)
    assert (loaded["position"], loaded["status"]) == ("position", "status")  # any status string, as Burr's tests use
    assert datetime.fromisoformat(loaded["created_at"]).tzinfo is not None


def test_saves_and_loads_by_sequence_id(persister, fresh):
    persister.save("pk", "app_id", 1, "pos", State({"a": 1, "b": 2}), "completed")
    for store in (persister, fresh()):
        assert store.load("pk", "app_id", 1)["state"].get_all() == {"a": 1, "b": 2}


def test_load_latest_or_a_given_sequence_id(persister, fresh):
    """Latest is the highest sequence id; an id never saved (a gap, past the end) loads None."""
    for seq in (1, 2, 3, 5):
        persister.save("pk", "app", seq, f"pos{seq}", State({"seq": seq, "history": list(range(seq))}), "completed")
    for store in (persister, fresh()):
        latest = store.load("pk", "app")
        assert (latest["sequence_id"], latest["position"], latest["state"]["seq"]) == (5, "pos5", 5)
        for seq in (1, 2, 3, 5):
            loaded = store.load("pk", "app", seq)
            assert (loaded["sequence_id"], loaded["position"]) == (seq, f"pos{seq}")
            assert loaded["state"].get_all() == {"seq": seq, "history": list(range(seq))}
        assert store.load("pk", "app", 4) is None and store.load("pk", "app", 6) is None
        assert store.load("pk", "app", 0) is None


def test_app_id_none_loads_the_last_thing_written_in_the_partition(persister):
    """Burr's SQLitePersister: `load(pk, None)` is the last row written in the partition."""
    persister.save("pk", "older", 7, "pos", State({"who": "older"}), "completed")
    persister.save("pk", "newer", 0, "pos", State({"who": "newer"}), "completed")
    assert persister.load("pk", None)["app_id"] == "newer"
    persister.save("pk", "older", 8, "pos", State({"who": "older again"}), "completed")
    loaded = persister.load("pk", None)
    assert (loaded["app_id"], loaded["sequence_id"], loaded["state"]["who"]) == ("older", 8, "older again")


def test_unknown_partition_or_app_or_step_loads_none(persister):
    assert persister.load("partition_key", "app_id") is None  # nothing saved at all
    persister.save("pk", "app", 0, "pos", State({"k": 1}), "completed")
    assert persister.load("pk", "nonexistent_key") is None
    assert persister.load("other-partition", "app") is None
    assert persister.load("other-partition", None) is None
    assert persister.load("pk", "app", 1) is None
    assert persister.list_app_ids("other-partition") == []


def test_list_app_ids_lists_every_branch_of_the_partition_most_recent_first(persister, fresh):
    """Burr's tests compare sets; ours also promise an order (most recently written first)."""
    persister.save("pk", "app_id1", 1, "pos1", State({"a": 1}), "completed")
    persister.save("pk", "app_id2", 2, "pos2", State({"b": 2}), "completed")
    persister.save("other", "app_id3", 0, "pos", State({"c": 3}), "completed")
    assert set(persister.list_app_ids("pk")) == {"app_id1", "app_id2"}
    assert persister.list_app_ids("pk") == ["app_id2", "app_id1"]
    persister.save("pk", "app_id1", 2, "pos2", State({"a": 2}), "completed")
    assert persister.list_app_ids("pk") == fresh().list_app_ids("pk") == ["app_id1", "app_id2"]


@pytest.mark.parametrize("method_name,kwargs", [
    ("list_app_ids", {"partition_key": None}),
    ("load", {"partition_key": None, "app_id": "foo"}),
    ("save", {"partition_key": None, "app_id": "foo", "sequence_id": 1, "position": "position",
              "state": State({"key": "value"}), "status": "status"}),
])
def test_methods_accept_partition_key_none(persister, method_name, kwargs):
    getattr(persister, method_name)(**kwargs)


def test_partition_key_none_is_the_default_partition(persister, fresh):
    """Like Burr's SQLitePersister (PARTITION_KEY_DEFAULT = ""), None and "" name one partition."""
    persister.save(None, "app", 0, "pos", State({"k": "none"}), "completed")
    persister.save(None, "app", 1, "pos", State({"k": "none again"}), "completed")
    for store in (persister, fresh()):
        assert store.load(None, "app")["state"]["k"] == "none again"
        assert store.load(None, "app", 0)["state"]["k"] == "none"
        assert store.load(None, None)["app_id"] == "app"
        assert store.load("", "app")["sequence_id"] == 1
        assert store.list_app_ids(None) == store.list_app_ids("") == ["app"]
        assert store.load("pk", "app") is None


def test_serialization_with_pickle(persister):
    """Burr pickles persisters (e.g. with applications sent to other processes): the copy reconnects."""
    persister.save("pk", "app_id_serde", 1, "pos", State({"a": 1, "b": 2}), "completed")
    copy = pickle.loads(pickle.dumps(persister))
    try:
        assert copy.load("pk", "app_id_serde", 1)["state"].get_all() == {"a": 1, "b": 2}
        copy.save("pk", "app_id_serde", 2, "pos", State({"a": 1, "b": 3}), "completed")
        assert persister.load("pk", "app_id_serde")["state"].get_all() == {"a": 1, "b": 3}
    finally:
        copy.engine.dispose()


def test_saving_a_step_again_raises_a_conflict_and_keeps_the_first(persister, fresh):
    """Differs from Burr on purpose. Burr's SQLitePersister keys rows by (partition, app_id,
    sequence_id, position): the same step saved again at the same position fails with
    sqlite3.IntegrityError, at another position it becomes a second row for that step (and which one
    loads is up to the database). We refuse any save at or below the branch's last step with
    SnapshotConflictError (a StorageError) and keep what was saved first, because two writers on one
    conversation (two tabs, two servers) must find out about each other."""
    reference = burr_sqlite()
    reference.save("pk", "app", 1, "pos", State({"v": "first"}), "completed")
    with pytest.raises(sqlite3.IntegrityError):
        reference.save("pk", "app", 1, "pos", State({"v": "second"}), "completed")
    reference.save("pk", "app", 1, "other-pos", State({"v": "second"}), "completed")  # accepted: a second row
    reference.cleanup()

    persister.save("pk", "app", 1, "pos", State({"v": "first"}), "completed")
    persister.save("pk", "app", 2, "pos", State({"v": "two"}), "completed")
    for seq, position in [(1, "pos"), (1, "other-pos"), (2, "pos"), (0, "pos")]:
        with pytest.raises(SnapshotConflictError):
            persister.save("pk", "app", seq, position, State({"v": "again"}), "completed")
    with pytest.raises(SnapshotConflictError):  # another process's writer finds out as well
        fresh().save("pk", "app", 2, "pos", State({"v": "again"}), "completed")
    for store in (persister, fresh()):
        assert store.load("pk", "app", 1)["state"]["v"] == "first"
        assert store.load("pk", "app")["state"]["v"] == "two"
    persister.save("pk", "app", 3, "pos", State({"v": "three"}), "completed")  # the branch goes on
    assert fresh().load("pk", "app")["state"]["v"] == "three"


# ---- Burr's pickle serde (burr.integrations.serde.pickle) ------------------------------------------
class Point:
    """A small class serialized by Burr's pickle serde."""

    def __init__(self, x: int, y: int):
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)


burr_pickle.register_type_to_pickle(Point)


def test_pickle_serde_values_round_trip_where_burrs_sqlite_persister_cannot_store_them(persister, fresh):
    """Burr's pickle serde turns a value into {"__burr_serde__": "pickle", "value": <bytes>}. Burr's
    own SQLitePersister stores JSON (json.dumps) and raises TypeError at save (checked here); ours
    stores the bytes (as base64 inside its JSON) and gives the object back, in a plain value, nested
    in a dict and inside list items, from the writer and from a fresh persister."""
    state = {"point": Point(1, 2), "nested": {"p": Point(3, 4), "n": 1},
             "chat_history": [{"role": "user", "content": "hi", "attachment": Point(5, 6)}, Point(7, 8)],
             "big": [Point(i, i) for i in range(100)]}
    assert State.deserialize(State(state).serialize()).get_all() == state  # the serde itself
    reference = burr_sqlite()
    with pytest.raises(TypeError, match="bytes"):
        reference.save("pk", "app", 0, "pos", State(state), "completed")
    reference.cleanup()

    persister.save("pk", "app", 0, "pos", State(state), "completed")
    later = {**state, "chat_history": [*state["chat_history"], {"role": "assistant", "content": "ok"}]}
    persister.save("pk", "app", 1, "pos", State(later), "completed")
    for store in (persister, persister, fresh()):
        assert store.load("pk", "app", 0)["state"].get_all() == state
        loaded = store.load("pk", "app")["state"]
        assert loaded.get_all() == later
        assert type(loaded["point"]) is Point and type(loaded["chat_history"][0]["attachment"]) is Point


# ---- applications: initialize_from, resuming and forking --------------------------------------------
@action(reads=["count", "chat_history"], writes=["count", "chat_history"])
def ask(state: State) -> State:
    count = state["count"] + 1
    return state.update(count=count).append(chat_history={"role": "user", "content": f"question {count}"})


@action(reads=["count", "chat_history"], writes=["chat_history"])
def answer(state: State, fail: bool = False) -> State:
    if fail:
        raise RuntimeError("the model is unavailable")
    return state.append(chat_history={"role": "assistant", "content": f"answer {state['count']}"})


DEFAULT_STATE = {"count": 0, "chat_history": []}


def build(persister, app_id: str, partition_key: str | None = "pk", *, resume: bool = True, fail: bool = False,
          sequence_id: int | None = None, **fork):
    """A two-action chat loop (ask -> answer -> ask ...) initialized from and persisted to `persister`."""
    return (
        ApplicationBuilder()
        .with_actions(ask=ask, answer=answer.bind(fail=fail))
        .with_transitions(("ask", "answer"), ("answer", "ask"))
        .initialize_from(persister, resume_at_next_action=resume, default_state=DEFAULT_STATE,
                         default_entrypoint="ask", **fork)
        .with_state_persister(persister)
        .with_identifiers(app_id=app_id, partition_key=partition_key, sequence_id=sequence_id)
        .build()
    )


def history(count: int) -> list[dict]:
    """The chat history after `count` steps of the loop."""
    messages = []
    for step in range(count):
        n = step // 2 + 1
        messages.append({"role": "user", "content": f"question {n}"} if step % 2 == 0
                        else {"role": "assistant", "content": f"answer {n}"})
    return messages


def run_steps(app, count: int) -> None:
    for _ in range(count):
        app.step()


def assert_steps(store, partition_key, app_id: str, seqs, positions=None) -> None:
    """Every listed step of the branch holds the loop's state after that many steps."""
    for i, seq in enumerate(seqs):
        loaded = store.load(partition_key, app_id, seq)
        assert loaded is not None, f"{app_id} step {seq} missing"
        assert loaded["state"]["chat_history"] == history(seq + 1), f"{app_id} step {seq}"
        assert loaded["state"]["count"] == (seq + 2) // 2
        if positions:
            assert loaded["position"] == positions[i]


def test_a_new_application_starts_from_the_default_state_and_saves_from_step_zero(persister, fresh):
    app = build(persister, "app")
    assert app.sequence_id is None and app.state["count"] == 0 and app.get_next_action().name == "ask"
    run_steps(app, 3)
    assert_steps(fresh(), "pk", "app", [0, 1, 2], ["ask", "answer", "ask"])
    assert fresh().load("pk", "app")["sequence_id"] == 2


def test_initialize_from_resumes_at_the_next_action(persister, fresh):
    run_steps(build(persister, "app"), 3)  # ask, answer, ask: the next action is answer
    resumed = build(fresh(), "app")
    assert resumed.sequence_id == 2
    assert resumed.state["chat_history"] == history(3) and resumed.state["count"] == 2
    assert resumed.get_next_action().name == "answer"
    run_steps(resumed, 2)  # answer, ask: saved as steps 3 and 4, no conflict with the earlier ones
    assert_steps(fresh(), "pk", "app", range(5), ["ask", "answer", "ask", "answer", "ask"])


def test_without_resuming_an_application_starts_at_the_entrypoint_with_the_loaded_state(persister, fresh):
    """resume_at_next_action=True takes the next action after the saved *position*; False starts at
    `default_entrypoint` with the loaded state. Except that every step an application saves carries
    Burr's own `__PRIOR_STEP` in its state, and Burr goes on after that either way (so it does with
    Burr's SQLitePersister, checked here): the difference shows on a state saved without it."""
    persister.save("pk", "saved", 0, "ask", State({"count": 1, "chat_history": history(1)}), "completed")
    resumed = build(fresh(), "saved", resume=True)
    assert resumed.sequence_id == 0 and resumed.get_next_action().name == "answer"
    restarted = build(fresh(), "saved", resume=False)
    assert restarted.sequence_id == 0 and restarted.state["chat_history"] == history(1)
    assert restarted.get_next_action().name == "ask"
    run_steps(restarted, 1)
    loaded = fresh().load("pk", "saved")
    assert (loaded["sequence_id"], loaded["position"], loaded["state"]["count"]) == (1, "ask", 2)
    assert loaded["state"]["chat_history"] == [*history(1), {"role": "user", "content": "question 2"}]

    reference = burr_sqlite()
    for store in (persister, reference):
        run_steps(build(store, "app"), 1)
        assert build(store, "app", resume=False).get_next_action().name == "answer"
    reference.cleanup()


def test_a_failed_step_is_saved_as_failed_and_resuming_retries_that_action(persister, fresh):
    app = build(persister, "app", fail=True)
    run_steps(app, 1)
    with pytest.raises(RuntimeError, match="unavailable"):
        app.step()  # answer fails: Burr saves step 1 as "failed"
    failed = fresh().load("pk", "app")
    assert (failed["sequence_id"], failed["position"], failed["status"]) == (1, "answer", "failed")
    assert failed["state"]["chat_history"] == history(1)

    resumed = build(fresh(), "app")
    assert resumed.get_next_action().name == "answer"
    run_steps(resumed, 1)
    loaded = fresh().load("pk", "app")
    assert (loaded["sequence_id"], loaded["position"], loaded["status"]) == (2, "answer", "completed")
    assert loaded["state"]["chat_history"] == history(2)
    assert fresh().load("pk", "app", 1)["status"] == "failed"  # the failed step stays as it was


def test_resuming_an_earlier_step_of_the_same_app_id_conflicts_with_its_later_steps(persister, fresh):
    """`with_identifiers(sequence_id=0)` on a branch that went on to step 3 loads step 0, and its next
    step would be saved as step 1 again. Ours raises SnapshotConflictError and keeps the branch as it
    was (fork, with fork_from_sequence_id, to go on from an earlier step). Burr's SQLitePersister
    fails too here, with sqlite3.IntegrityError, only because step 1 comes at the same position
    (answer); at another position it would add a second row for step 1."""
    run_steps(build(persister, "app"), 4)
    back = build(fresh(), "app", sequence_id=0)
    assert back.sequence_id == 0 and back.state["chat_history"] == history(1)
    with pytest.raises(SnapshotConflictError):
        back.step()
    assert_steps(fresh(), "pk", "app", range(4))
    assert fresh().load("pk", "app")["sequence_id"] == 3


def test_fork_from_app_id_starts_a_new_branch_from_the_latest_step(persister, fresh):
    run_steps(build(persister, "old"), 4)
    fork = build(fresh(), "new", fork_from_app_id="old", fork_from_partition_key="pk")
    assert fork.uid == "new" and fork.parent_pointer.app_id == "old"
    assert fork.sequence_id == 3 and fork.state["chat_history"] == history(4)
    assert fork.get_next_action().name == "ask"
    run_steps(fork, 2)
    store = fresh()
    assert_steps(store, "pk", "new", [4, 5], ["ask", "answer"])
    assert store.load("pk", "new", 3) is None  # the fork's own steps start after the one it came from
    assert_steps(store, "pk", "old", range(4))
    assert store.load("pk", "old")["sequence_id"] == 3  # the source branch is untouched
    assert store.list_app_ids("pk") == ["new", "old"]


def test_fork_from_sequence_id_starts_from_that_step(persister, fresh):
    run_steps(build(persister, "old"), 5)
    fork = build(fresh(), "new", fork_from_app_id="old", fork_from_partition_key="pk", fork_from_sequence_id=1)
    assert (fork.parent_pointer.app_id, fork.parent_pointer.sequence_id) == ("old", 1)
    assert fork.sequence_id == 1 and fork.state["chat_history"] == history(2)
    assert fork.get_next_action().name == "ask"
    run_steps(fork, 1)
    store = fresh()
    assert_steps(store, "pk", "new", [2], ["ask"])
    assert store.load("pk", "new")["sequence_id"] == 2
    assert store.load("pk", "old", 2)["state"]["chat_history"] == history(3)  # same id, other branch: intact
    assert store.load("pk", "old")["sequence_id"] == 4


def test_fork_from_partition_key_forks_across_partitions(persister, fresh):
    """The source is read from `fork_from_partition_key`; the new branch is written to the app's own.
    Partitions are separate namespaces: without fork_from_partition_key, Burr reads the source from
    the default partition (None), finds nothing there and starts from the default state."""
    run_steps(build(persister, "old", "source"), 3)
    fork = build(fresh(), "new", "target", fork_from_app_id="old", fork_from_partition_key="source",
                 fork_from_sequence_id=2)
    assert fork.sequence_id == 2 and fork.state["chat_history"] == history(3)
    run_steps(fork, 1)
    store = fresh()
    assert_steps(store, "target", "new", [3], ["answer"])
    assert store.list_app_ids("target") == ["new"] and store.list_app_ids("source") == ["old"]
    assert store.load("source", "new") is None and store.load("target", "old") is None

    unlinked = build(fresh(), "newer", "target", fork_from_app_id="old")  # looks in partition None
    assert unlinked.sequence_id is None and unlinked.state["chat_history"] == []


def test_forking_from_an_app_that_does_not_exist_starts_from_the_default_state(persister, fresh):
    fork = build(persister, "new", fork_from_app_id="missing", fork_from_partition_key="pk", fork_from_sequence_id=3)
    assert fork.sequence_id is None and fork.state["count"] == 0 and fork.parent_pointer is None
    run_steps(fork, 1)
    assert_steps(fresh(), "pk", "new", [0], ["ask"])


def test_applications_with_partition_key_none_save_resume_and_fork(persister, fresh):
    run_steps(build(persister, "app", None), 3)
    resumed = build(fresh(), "app", None)
    assert resumed.sequence_id == 2 and resumed.get_next_action().name == "answer"
    run_steps(resumed, 1)
    fork = build(fresh(), "fork", None, fork_from_app_id="app", fork_from_sequence_id=0)
    assert fork.sequence_id == 0 and fork.state["chat_history"] == history(1)
    run_steps(fork, 1)
    store = fresh()
    assert_steps(store, None, "app", range(4))
    assert_steps(store, None, "fork", [1], ["answer"])
    assert store.list_app_ids(None) == ["fork", "app"]
    assert store.list_app_ids("pk") == []


@action(reads=["chat_history"], writes=["chat_history"])
def revise(state: State) -> State:
    """Edits the last message in place (as streaming code is tempted to) and writes the list back."""
    messages = state["chat_history"]
    messages[-1]["content"] += " (revised)"
    return state.update(chat_history=messages)


def _revising_app(store, app_id: str):
    return (ApplicationBuilder().with_actions(ask=ask, revise=revise).with_transitions(("ask", "revise"))
            .initialize_from(store, resume_at_next_action=True, default_state=DEFAULT_STATE, default_entrypoint="ask")
            .with_state_persister(store).with_identifiers(app_id=app_id, partition_key="pk").build())


@pytest.mark.parametrize("objects", ["the app's own", "loaded"])
def test_an_action_that_edits_a_message_in_place_is_saved_or_refused_never_lost(persister, fresh, objects):
    """The in-place edit Burr cannot see: the message object the previous step saved is changed and
    the same list written back, by the application that made it, or by one resumed from the
    database (whose messages are loaded objects). Either the edit is refused at the point of change
    (TypeError: the object is shared with the storage) or the step saved holds it; it may never be
    silently dropped."""
    app = _revising_app(persister, "app")
    run_steps(app, 1)
    if objects == "loaded":
        app = _revising_app(fresh(), "app")
        assert app.get_next_action().name == "revise"
    try:
        app.step()
    except TypeError:
        assert fresh().load("pk", "app", 1)["status"] == "failed"
    else:
        for store in (persister, fresh()):
            assert store.load("pk", "app", 1)["state"]["chat_history"] == [
                {"role": "user", "content": "question 1 (revised)"}]
    for store in (persister, fresh()):
        assert store.load("pk", "app", 0)["state"]["chat_history"] == history(1)
