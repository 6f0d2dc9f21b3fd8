"""Burr's persister contract and the conversation catalog, run on a SQLite file and on PostgreSQL alike."""
from __future__ import annotations

import dataclasses
import multiprocessing
import threading
from datetime import datetime

import pytest
from burr.core import State, serde
from burr.core.state import register_field_serde
from sqlalchemy import func, select

from core.storage import ConversationStore
from core.errors import SnapshotConflictError, StorageError
from core.storage import SQLAlchemyPersister
from core.storage.schema import App, ListItem, Snapshot, StateValue

BIG = "long text " * 200  # well over the inline limit, so it lives in its own row


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def save_turn(persister, pk, app_id, seq, history, status="completed", position="human_input", **extra):
    persister.save(pk, app_id, seq, position, State({"chat_history": list(history), **extra}), status)


def test_initialize_twice_is_safe_and_is_initialized_follows(db_url):
    persister = SQLAlchemyPersister.from_url(db_url)
    try:
        assert persister.is_initialized() is False
        persister.initialize()
        assert persister.is_initialized() is True
        persister.initialize()
        assert persister.is_initialized() is True
        save_turn(persister, "c", "a", 0, [user("hi")])
        persister.initialize()  # and again with data in it
        assert persister.load("c", "a")["state"]["chat_history"] == [user("hi")]
    finally:
        persister.engine.dispose()


def test_round_trip_of_varied_values(persister):
    state = {
        "chat_history": [user("héllo 🦫 日本語"), {"role": "assistant", "content": BIG, "status": "stopped"}],
        "count": 3, "ratio": 0.25, "flag": True, "nothing": None, "empty": [], "empty_dict": {},
        "nested": {"a": {"b": [1, 2, {"c": "d"}], "ü": "ß"}}, "big": BIG, "tags": ["x", "y"],
        "quotes": "it's \"quoted\" \\ backslash\nnewline",
    }
    persister.save("c1", "app", 0, "human_input", State(state), "completed")
    loaded = persister.load("c1", "app")
    assert loaded["state"].get_all() == state
    assert (loaded["partition_key"], loaded["app_id"], loaded["sequence_id"]) == ("c1", "app", 0)
    assert (loaded["position"], loaded["status"]) == ("human_input", "completed")
    assert datetime.fromisoformat(loaded["created_at"]).tzinfo is not None
    assert persister.load_serialized("c1", "app", 0) == state


def test_broken_unicode_round_trips(persister):
    """Lone surrogates (e.g. an emoji split across a model's stream chunks) are stored exactly."""
    state = {"chat_history": [user("ok"), {"role": "assistant", "content": "half \ud83d emoji"}],
             "small": "x\udfffy", "big": "\ud800" + BIG}
    persister.save("c", "a", 0, "ai_response", State(state), "completed")
    state["chat_history"].append(user("next"))
    persister.save("c", "a", 1, "human_input", State(state), "completed")
    assert persister.load("c", "a", 0)["state"]["chat_history"][1]["content"] == "half \ud83d emoji"
    assert persister.load("c", "a")["state"].get_all() == state


def test_load_latest_or_a_given_step(persister):
    history = []
    for seq in range(4):
        history.append(user(f"m{seq}"))
        save_turn(persister, "c", "a", seq, history, position=f"p{seq}", big=BIG + str(seq))
    latest = persister.load("c", "a")
    assert latest["sequence_id"] == 3 and latest["position"] == "p3"
    for seq in range(4):
        loaded = persister.load("c", "a", seq)
        assert loaded["sequence_id"] == seq
        assert loaded["state"]["chat_history"] == [user(f"m{i}") for i in range(seq + 1)]
        assert loaded["state"]["big"] == BIG + str(seq)
    assert persister.load("c", "a", 99) is None
    assert persister.load("c", "other-app") is None
    assert persister.load("other-conversation", None) is None


def test_app_id_none_loads_the_most_recent_branch(persister):
    save_turn(persister, "c", "A", 0, [user("a0")])
    save_turn(persister, "c", "B", 0, [user("b0")])
    assert persister.load("c", None)["app_id"] == "B"
    save_turn(persister, "c", "A", 1, [user("a0"), user("a1")])
    loaded = persister.load("c", None)
    assert loaded["app_id"] == "A" and loaded["sequence_id"] == 1
    assert persister.list_app_ids("c") == ["A", "B"]


def test_list_app_ids_is_exact_within_the_same_millisecond(persister):
    app_ids = [f"app-{i:02d}" for i in range(40)]
    for app_id in app_ids:  # a tight loop: many saves share a timestamp
        save_turn(persister, "c", app_id, 0, [])
    assert persister.list_app_ids("c") == app_ids[::-1]
    save_turn(persister, "c", "app-07", 1, [])
    assert persister.list_app_ids("c")[:2] == ["app-07", "app-39"]
    assert persister.list_app_ids("nobody") == []


def test_partition_key_none(persister):
    save_turn(persister, None, "a", 0, [user("no partition")])
    save_turn(persister, "x", "b", 0, [user("partitioned")])
    assert persister.load(None, "a")["state"]["chat_history"] == [user("no partition")]
    assert persister.load(None, None)["app_id"] == "a"
    assert persister.list_app_ids(None) == ["a"]
    assert persister.list_app_ids("x") == ["b"]
    save_turn(persister, None, "a", 1, [user("no partition"), user("more")])
    assert persister.load(None, None)["sequence_id"] == 1


def test_saving_a_step_twice_raises_and_keeps_the_first(persister):
    save_turn(persister, "c", "a", 0, [user("first")], big=BIG)
    save_turn(persister, "c", "a", 1, [user("first"), user("second")], big=BIG)
    with pytest.raises(SnapshotConflictError):
        save_turn(persister, "c", "a", 1, [user("impostor")], big="other")
    with pytest.raises(SnapshotConflictError):
        save_turn(persister, "c", "a", 0, [user("older")])
    kept = persister.load("c", "a")
    assert kept["sequence_id"] == 1
    assert kept["state"].get_all() == {"chat_history": [user("first"), user("second")], "big": BIG}
    save_turn(persister, "c", "a", 2, [user("first"), user("second"), user("third")], big=BIG)
    assert persister.load("c", "a")["state"]["chat_history"][-1] == user("third")
    assert persister.load("c", "a", 1)["state"]["chat_history"] == [user("first"), user("second")]


def test_conflict_is_also_a_storage_error():
    assert issubclass(SnapshotConflictError, StorageError)


def test_failed_status_loads(persister):
    save_turn(persister, "c", "a", 0, [user("q")])
    save_turn(persister, "c", "a", 1, [user("q")], status="failed", position="ai_response")
    loaded = persister.load("c", None)
    assert (loaded["sequence_id"], loaded["status"], loaded["position"]) == (1, "failed", "ai_response")


def test_threads_saving_to_different_conversations_all_land(persister):
    threads_n, saves_n = 8, 30
    errors: list[BaseException] = []

    def writer(index: int) -> None:
        try:
            history = []
            for seq in range(saves_n):
                history.append(user(f"t{index}-{seq}"))
                save_turn(persister, f"conv-{index}", f"app-{index}", seq, history, n=seq)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(threads_n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    store = ConversationStore(persister)
    assert store.count() == threads_n
    for index in range(threads_n):
        loaded = persister.load(f"conv-{index}", None)
        assert loaded["sequence_id"] == saves_n - 1 and loaded["state"]["n"] == saves_n - 1
        assert loaded["state"]["chat_history"] == [user(f"t{index}-{s}") for s in range(saves_n)]
        assert store.snapshot_count(f"conv-{index}", f"app-{index}") == saves_n


def _process_writer(url: str, index: int, saves: int) -> None:
    """Runs in a spawned process: its own engine, its own persister, one conversation."""
    persister = SQLAlchemyPersister.from_url(url)
    persister.initialize()  # both processes start on a database nobody has set up yet
    history = []
    for seq in range(saves):
        history.append(user(f"p{index}-{seq}"))
        save_turn(persister, f"proc-{index}", "main", seq, history)
    persister.engine.dispose()


def test_two_processes_on_one_database(db_url):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_writer, args=(db_url, i, 25)) for i in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    persister = SQLAlchemyPersister.from_url(db_url)
    try:
        for index in range(2):
            loaded = persister.load(f"proc-{index}", None)
            assert loaded["sequence_id"] == 24
            assert loaded["state"]["chat_history"] == [user(f"p{index}-{s}") for s in range(25)]
        assert ConversationStore(persister).count() == 2
    finally:
        persister.engine.dispose()


def test_a_second_writer_continues_a_branch_correctly(persister, db_url):
    """The cache-miss path: each writer rebuilds the previous state from the database."""
    other = SQLAlchemyPersister.from_url(db_url)
    expected: dict[int, dict] = {}

    def save(writer, seq, state):
        writer.save("c", "a", seq, f"p{seq}", State(state), "completed")
        expected[seq] = state

    try:
        save(persister, 0, {"chat_history": [user("1")], "big": BIG, "small": 1})
        save(persister, 1, {"chat_history": [user("1"), user("2")], "big": BIG, "small": 2})
        save(other, 2, {"chat_history": [user("1"), user("2"), user("3")], "big": BIG + "!", "small": 3})
        save(persister, 3, {"chat_history": [user("1"), user("2"), user("3"), user("4")], "big": BIG + "!"})
        save(other, 4, {"chat_history": [user("rewritten")], "big": BIG, "small": 5})  # not an append
        save(persister, 5, {"chat_history": [user("rewritten"), user("6")], "big": BIG, "small": 6})
        save(other, 6, {"chat_history": [user("edited"), user("6"), user("7")], "big": BIG})  # longer, new prefix
        fresh = SQLAlchemyPersister.from_url(db_url)
        try:
            for seq, state in expected.items():
                assert fresh.load("c", "a", seq)["state"].get_all() == state, f"step {seq}"
        finally:
            fresh.engine.dispose()
    finally:
        other.engine.dispose()


LIST_EDITS = [
    [user("a")],
    [user("a"), user("b")],                      # appended
    [user("a"), user("B!")],                     # same length, last item changed
    [user("A!"), user("B!"), user("c")],         # longer, first item changed
    [user("A!")],                                # shortened
    [],                                          # emptied
    [user(str(i)) for i in range(70)],           # many items at once
    [user(str(i)) for i in range(71)],
    [user(str(i)) for i in range(69)] + [user("x"), user("y")],  # same prefix minus one, then new
]


def test_every_kind_of_list_change_round_trips(persister, db_url):
    for seq, history in enumerate(LIST_EDITS):
        save_turn(persister, "c", "a", seq, history)
        assert persister.load("c", "a")["state"]["chat_history"] == history, f"step {seq}"
    fresh = SQLAlchemyPersister.from_url(db_url)
    try:
        for seq, history in enumerate(LIST_EDITS):
            assert fresh.load("c", "a", seq)["state"]["chat_history"] == history, f"step {seq}"
    finally:
        fresh.engine.dispose()


# ---- the conversation catalog ---------------------------------------------------------------
@pytest.fixture
def store(persister) -> ConversationStore:
    return ConversationStore(persister)


def test_title_defaults_to_the_start_of_the_first_user_message(persister, store):
    save_turn(persister, "c", "a", 0, [])
    assert store.get("c").title == "Untitled conversation"
    long_text = "  What   is\na burrow? " + "word " * 40
    save_turn(persister, "c", "a", 1, [user(long_text)])
    save_turn(persister, "c", "a", 2, [user(long_text), user("second message")])
    summary = store.get("c")
    assert summary.title.startswith("What is a burrow? word")
    assert len(summary.title) <= 80 and "\n" not in summary.title
    assert summary.message_count == 2 and summary.latest_app_id == "a"
    assert summary.created_at <= summary.updated_at
    assert store.get("missing") is None


def test_title_of_a_first_message_with_control_characters(persister, store):
    """The state keeps the text exactly; the title (a text column, no NUL on PostgreSQL) drops them."""
    history = [user("nul\x00 and\x07 bell\x1b[0m")]
    save_turn(persister, "c", "a", 0, history)
    assert persister.load("c", "a")["state"]["chat_history"] == history
    assert store.get("c").title == "nul and bell[0m"


def test_rename_survives_saves_and_empty_restores_the_default(persister, store):
    save_turn(persister, "c", "a", 0, [user("original question")])
    store.rename("c", "  My   trip  ")
    assert store.get("c").title == "My trip"
    save_turn(persister, "c", "a", 1, [user("original question"), user("more")])
    assert store.get("c").title == "My trip"
    store.rename("c", "   ")
    assert store.get("c").title == "original question"
    save_turn(persister, "c", "a", 2, [user("original question"), user("more"), user("x")])
    assert store.get("c").title == "original question"
    with pytest.raises(StorageError):
        store.rename("missing", "name")


def test_list_is_newest_first_with_a_paging_cursor(persister, store):
    keys = [f"c{i}" for i in range(7)]
    for key in keys:
        save_turn(persister, key, "a", 0, [user(f"about {key}")])
    assert [s.partition_key for s in store.list()] == keys[::-1]
    save_turn(persister, "c2", "a", 1, [user("about c2"), user("again")])
    order = ["c2", "c6", "c5", "c4", "c3", "c1", "c0"]
    assert [s.partition_key for s in store.list()] == order
    pages, cursor = [], None
    while True:
        page = store.list(limit=3, before_activity=cursor)
        if not page:
            break
        pages.append([s.partition_key for s in page])
        cursor = page[-1].activity
    assert pages == [order[:3], order[3:6], order[6:]]
    assert store.count() == 7


def test_text_filter_is_case_insensitive_and_takes_wildcards_literally(persister, store):
    titles = {"pct": "100% sure about this", "under": "snake_case names", "plain": "Plain words here",
              "slash": "back\\slash path"}
    for key, title in titles.items():
        save_turn(persister, key, "a", 0, [user(title)])
    assert {s.partition_key for s in store.list(search="%")} == {"pct"}
    assert {s.partition_key for s in store.list(search="_")} == {"under"}
    assert {s.partition_key for s in store.list(search="\\")} == {"slash"}
    assert {s.partition_key for s in store.list(search="PLAIN")} == {"plain"}
    assert {s.partition_key for s in store.list(search="  s ")} == set(titles)  # trimmed
    assert store.count(search="%") == 1 and store.count(search="e") == 3 and store.count(search="zzz") == 0
    store.rename("plain", "Renamed 50%")
    assert {s.partition_key for s in store.list(search="50%")} == {"plain"}


def test_delete_removes_snapshots_and_branches(persister, store):
    for app_id in ("a", "b"):
        for seq in range(3):
            save_turn(persister, "doomed", app_id, seq, [user(str(i)) for i in range(seq + 1)], big=BIG + str(seq))
    save_turn(persister, "kept", "k", 0, [user("stay")], big=BIG)

    def rows(model) -> int:
        with persister.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(model)).scalar_one()

    before = {model: rows(model) for model in (App, Snapshot, StateValue, ListItem)}
    assert store.delete("doomed") is True
    assert persister.load("doomed", None) is None
    assert persister.list_app_ids("doomed") == [] and store.branches("doomed") == []
    assert store.snapshot_count("doomed", "a") == 0 and store.get("doomed") is None
    assert rows(App) == 1 and rows(Snapshot) == 1
    assert rows(StateValue) < before[StateValue] and rows(ListItem) < before[ListItem]
    assert store.count() == 1 and persister.load("kept", None)["state"]["big"] == BIG
    assert store.delete("doomed") is False
    save_turn(persister, "doomed", "a", 0, [user("reborn")])  # the id can be used again
    assert persister.load("doomed", "a")["state"]["chat_history"] == [user("reborn")]


def test_branch_and_snapshot_listings(persister, store):
    for seq in range(5):
        save_turn(persister, "c", "a", seq, [user("x")] * (seq + 1), position=f"p{seq}")
    persister.save("c", "b", 2, "p2", State({"chat_history": [user("x")] * 3}), "completed", forked_from=("a", 2))
    branches = store.branches("c")
    assert [b.app_id for b in branches] == ["b", "a"]
    assert (branches[0].forked_from_app_id, branches[0].forked_from_sequence_id, branches[0].last_sequence_id) == ("a", 2, 2)
    assert [s.sequence_id for s in store.snapshots("c", "a", offset=1, limit=2)] == [1, 2]
    assert [s.sequence_id for s in store.snapshots("c", "a", limit=2, newest_first=True)] == [4, 3]
    assert store.snapshots("c", "a")[0].position == "p0"
    assert store.snapshot_count("c", "a") == 5
    assert store.previous_sequence_id("c", "a", 3) == 2 and store.previous_sequence_id("c", "a", 0) is None


# ---- Burr's custom serde ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Money:
    cents: int
    currency: str


@serde.serialize.register(Money)
def _serialize_money(value: Money, **kwargs) -> dict:
    return {serde.KEY: "burrow_test_money", "cents": value.cents, "currency": value.currency}


@serde.deserializer.register("burrow_test_money")
def _deserialize_money(value: dict, **kwargs) -> Money:
    return Money(value["cents"], value["currency"])


register_field_serde(
    "burrow_test_point",
    lambda value, **kwargs: {"xy": f"{value[0]},{value[1]}"},
    lambda value, **kwargs: tuple(int(v) for v in value["xy"].split(",")),
)


def test_custom_serde_round_trips(persister):
    state = State({"price": Money(499, "EUR"), "basket": [Money(1, "USD"), Money(2, "GBP")],
                   "burrow_test_point": (3, 4), "chat_history": []})
    persister.save("c", "a", 0, "human_input", state, "completed")
    persister.save("c", "a", 1, "human_input", state.update(price=Money(500, "EUR")), "completed")
    loaded = persister.load("c", "a", 0)["state"]
    assert loaded["price"] == Money(499, "EUR")
    assert loaded["basket"] == [Money(1, "USD"), Money(2, "GBP")]
    assert loaded["burrow_test_point"] == (3, 4)
    assert persister.load("c", "a")["state"]["price"] == Money(500, "EUR")
    raw = persister.load_serialized("c", "a", 0)
    assert raw["price"] == {serde.KEY: "burrow_test_money", "cents": 499, "currency": "EUR"}
    assert raw["burrow_test_point"] == {"xy": "3,4"}
