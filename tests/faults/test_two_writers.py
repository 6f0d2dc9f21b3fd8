"""Two writers on one conversation (two tabs on one server, or two servers on one database).

Nothing is overwritten, no message is lost, no branch appears by itself, and the second writer is
told what happened. Two ChatService objects, each with its own engine, stand for two server processes.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from burr.core import State

from core.app import ResumingTrackingClient
from core.chat import ChatService
from core.errors import SnapshotConflictError, StorageError
from core.storage import SQLAlchemyPersister

LONG = " ".join(f"slow{i}" for i in range(30))


def run_in_thread(work: Callable[[], object]) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def target() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, box


def consume(turn) -> Callable[[], str]:
    return lambda: "".join(turn)


def assert_one_clean_branch(service: ChatService, pk: str, turns: int) -> list[dict]:
    """One branch, snapshots 0..n-1 all completed (none overwritten or skipped); returns the messages."""
    branches = service.branches(pk)
    assert len(branches) == 1
    snaps = service.snapshots(pk, branches[0].app_id)
    assert [s.sequence_id for s in snaps] == list(range(3 * turns))
    assert [s.position for s in snaps] == ["human_input", "safety_check", "ai_response"] * turns
    assert {s.status for s in snaps} == {"completed"}
    messages = service.open(pk).messages
    assert len(messages) == 2 * turns
    return messages


def pairs(messages: list[dict]) -> list[tuple[str, str]]:
    """(question, answer) pairs; with the echo model each answer names its own question."""
    return [(q["content"], a["content"]) for q, a in zip(messages[::2], messages[1::2])]


def test_two_threads_of_one_server_both_land(make_service, llm_server):
    """Two tabs on one server send at the same moment: turns queue, both land, the later one is told."""
    service = make_service()
    pk = service.new_conversation_id()
    llm_server.chunk_delay = 0.02
    start = threading.Barrier(2)
    turns = [service.send(pk, f"from tab {i}", expected_messages=0) for i in (1, 2)]

    def tab(turn) -> Callable[[], str]:
        return lambda: (start.wait(), "".join(turn))[1]

    threads = [run_in_thread(tab(turn)) for turn in turns]
    for thread, box in threads:
        thread.join(30)
        assert "error" not in box
    assert [t.outcome for t in turns] == ["answered", "answered"]
    assert sorted(pairs(assert_one_clean_branch(service, pk, 2))) == [
        ("from tab 1", "Echo: from tab 1"), ("from tab 2", "Echo: from tab 2")]
    assert sorted(t.notice is None for t in turns) == [False, True]  # exactly the later one is told


def test_second_server_with_a_stale_view_is_told_and_nothing_is_lost(make_service):
    a, b = make_service(), make_service()
    pk = a.new_conversation_id()
    assert b.open(pk).messages == []  # B's page shows an empty conversation ...
    first = a.send(pk, "from A", expected_messages=0)
    assert "".join(first) == "Echo: from A" and first.notice is None
    second = b.send(pk, "from B", expected_messages=0)  # ... and B sends from that stale view
    assert "".join(second) == "Echo: from B" and second.outcome == "answered"
    assert "another tab or window" in second.notice
    assert pairs(assert_one_clean_branch(b, pk, 2)) == [("from A", "Echo: from A"), ("from B", "Echo: from B")]
    assert a.open(pk).messages == b.open(pk).messages


def test_second_server_waits_for_a_reply_still_streaming_on_the_first(make_service, llm_server):
    """B sends while A's reply is streaming: B's message goes after A's reply, and A's reply is kept."""
    a, b = make_service(), make_service()
    pk = a.new_conversation_id()
    llm_server.reply, llm_server.chunk_delay = (lambda m: LONG if m[-1]["content"] == "from A" else "quick"), 0.03
    turn_a, streaming = a.send(pk, "from A"), threading.Event()

    def tab_a() -> str:
        pieces = []
        for piece in turn_a:
            pieces.append(piece)
            streaming.set()  # A's user message is saved and its reply is streaming
        return "".join(pieces)

    thread_a, box_a = run_in_thread(tab_a)
    assert streaming.wait(30)
    llm_server.chunk_delay = 0
    turn_b = b.send(pk, "from B", expected_messages=0)
    assert "".join(turn_b) == "quick" and turn_b.outcome == "answered"
    thread_a.join(30)
    assert box_a.get("result") == LONG and turn_a.outcome == "answered", turn_a.error
    assert "another tab or window" in turn_b.notice
    assert pairs(assert_one_clean_branch(a, pk, 2)) == [("from A", LONG), ("from B", "quick")]
    assert llm_server.requests[-1]["messages"][-3:-1] == [  # B's model saw A's finished exchange
        {"role": "user", "content": "from A"}, {"role": "assistant", "content": LONG}]


def test_a_turn_abandoned_by_a_crashed_server_does_not_block(make_service):
    """A server died after saving the user's message and the safety check: later messages go after it."""
    crashed, b = make_service(), make_service(BURROW_REQUEST_TIMEOUT="0.2")
    pk = crashed.new_conversation_id()
    app = crashed.application(pk)
    app.step(inputs={"prompt": "lost in the crash"})  # human_input
    app.step()  # safety_check; the process "dies" before the reply
    turn = b.send(pk, "hello again")
    assert "".join(turn) == "Echo: hello again" and turn.outcome == "answered"
    assert turn.notice is None  # no reply arrived from elsewhere, so none is announced
    contents = [m["content"] for m in b.open(pk).messages]
    assert contents == ["lost in the crash", "hello again", "Echo: hello again"]
    assert len(b.branches(pk)) == 1


# ---- the race on one save ------------------------------------------------------------------------
@pytest.mark.parametrize("round_", range(5))
def test_racing_saves_of_one_step_exactly_one_wins(db_url, round_):
    """Two persisters (two processes) save the same (partition, app, sequence) at the same moment."""
    stores = [SQLAlchemyPersister.from_url(db_url) for _ in range(2)]
    stores[0].initialize()
    start = threading.Barrier(2)
    results: list[str] = []
    base = State({"chat_history": [{"role": "user", "content": "shared"}], "prompt": "shared"})
    if round_ % 2:  # odd rounds race on an existing branch, even rounds on its very first step
        stores[0].save("pk", "app", 0, "human_input", base, "completed")

    def writer(i: int) -> None:
        state = base.update(prompt=f"writer {i}")
        start.wait()
        try:
            stores[i].save("pk", "app", round_ % 2, "safety_check", state, "completed")
            results.append(f"won {i}")
        except SnapshotConflictError:
            results.append("conflict")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    try:
        assert sorted(results)[0] == "conflict" and len(results) == 2 and results.count("conflict") == 1
        winner = int(next(r for r in results if r.startswith("won"))[-1])
        for store in stores:  # both processes read the winner's state
            assert store.load("pk", "app")["state"]["prompt"] == f"writer {winner}"
    finally:
        for store in stores:
            store.engine.dispose()


class PausingPersister(SQLAlchemyPersister):
    """The real persister; its next save of the user's message waits until the test lets it go.

    This pins down the one interleaving that a real race produces only sometimes: this server
    loaded the conversation, another server wrote a whole turn, and only then does this one save.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.paused, self.resume = threading.Event(), threading.Event()

    def save(self, partition_key, app_id, sequence_id, position, state, status, **kwargs):
        if position == "human_input" and not self.resume.is_set():
            self.paused.set()
            assert self.resume.wait(30)
        return super().save(partition_key, app_id, sequence_id, position, state, status, **kwargs)


def write_turn_without_a_lease(service: ChatService, pk: str, text: str) -> None:
    """A writer that does not take the branch's lease (a server of an older release): its turn lands
    in the middle of another writer's, which only the persister's conflict check can catch."""
    app = service.application(pk)
    app.step(inputs={"prompt": text})
    app.step()
    app.step()


def test_a_second_server_waits_for_the_lease_instead_of_racing(make_service):
    """A holds the branch's lease from before it saves its message: B queues behind it, no conflict."""
    b = make_service()
    a_settings = make_service().settings
    a = ChatService(a_settings, PausingPersister.from_url(a_settings.database_url), b.model)
    pk = a.new_conversation_id()
    turn_a = a.send(pk, "from A", expected_messages=0)
    assert a.persister.paused.wait(30)  # A holds the lease and is about to save its message
    turn_b = b.send(pk, "from B", expected_messages=0)
    assert not turn_b.wait(0.5)  # B waits for A's lease ...
    a.persister.resume.set()
    assert turn_a.wait(30) and turn_b.wait(30)
    a.close()
    assert (turn_a.outcome, turn_b.outcome) == ("answered", "answered"), (turn_a.error, turn_b.error)
    assert turn_a.notice is None and "another tab or window" in turn_b.notice  # ... and is told it came second
    assert pairs(assert_one_clean_branch(b, pk, 2)) == [("from A", "Echo: from A"), ("from B", "Echo: from B")]


def test_chat_service_replays_a_turn_that_lost_the_race(make_service):
    """A writer that ignores leases slips a whole turn in: the conflict check catches A, A replays."""
    b = make_service()
    a_settings = make_service().settings
    a = ChatService(a_settings, PausingPersister.from_url(a_settings.database_url), b.model)
    pk = a.new_conversation_id()
    turn_a = a.send(pk, "from A", expected_messages=0)
    assert a.persister.paused.wait(30)  # A has built its state and is about to save its message
    write_turn_without_a_lease(b, pk, "from B")
    a.persister.resume.set()
    assert turn_a.wait(30)
    a.close()
    assert turn_a.reply == "Echo: from A" and turn_a.outcome == "answered", turn_a.error
    assert "another tab or window" in turn_a.notice
    assert pairs(assert_one_clean_branch(b, pk, 2)) == [("from B", "Echo: from B"), ("from A", "Echo: from A")]


def test_a_save_that_keeps_losing_fails_readably(make_service):
    """If the replay loses again, the turn fails with a clear message instead of looping."""
    b = make_service()
    a_settings = make_service().settings
    a = ChatService(a_settings, PausingPersister.from_url(a_settings.database_url), b.model)
    pk = a.new_conversation_id()
    list(b.send(pk, "warm-up"))
    turn_a = a.send(pk, "from A")
    for round_ in range(2):  # B wins twice: before A's first save and before A's replayed save
        assert a.persister.paused.wait(30)
        a.persister.paused.clear()
        write_turn_without_a_lease(b, pk, f"B wins {round_}")
        held, a.persister.resume = a.persister.resume, threading.Event() if round_ == 0 else a.persister.resume
        held.set()
    assert turn_a.wait(30)
    a.close()
    assert turn_a.outcome == "failed" and isinstance(turn_a.error, StorageError)
    assert "another writer" in str(turn_a.error) and "Reload" in str(turn_a.error)
    assert "from A" not in [m["content"] for m in b.open(pk).messages]


@pytest.mark.timeout(60)  # mistaking the fork for a turn under way would wait 2 x 60 s
def test_a_branch_forked_from_inside_a_turn_is_not_taken_for_a_busy_writer(make_service):
    service = make_service(BURROW_REQUEST_TIMEOUT="60")
    pk = service.new_conversation_id()
    first = service.send(pk, "first")
    list(first)
    branch = service.fork(pk, first.app_id, 1)  # after the safety check, before the reply
    assert service.open(pk, branch).pending_step == "ai_response"
    turn = service.send(pk, "on the new branch", app_id=branch)
    assert "".join(turn) == "Echo: on the new branch" and turn.notice is None
    assert [m["content"] for m in service.open(pk, branch).messages] == [
        "first", "on the new branch", "Echo: on the new branch"]


def test_a_tab_that_waits_too_long_for_the_other_is_told_and_stores_nothing(make_service, llm_server):
    """Same server: the second tab waits for the first tab's turn at most 2 x the model timeout."""
    service = make_service(BURROW_REQUEST_TIMEOUT="1")  # the queue gives up after 2 s ...
    service.writers.ttl = 0.5  # ... when leases are this short (the wait is at least two lease lifetimes)
    pk = service.new_conversation_id()
    # 6 s of streaming; each chunk comes 5x within the timeout, so a busy machine does not time tab one out
    llm_server.reply, llm_server.chunk_delay = LONG, 0.2
    first, streaming = service.send(pk, "long one"), threading.Event()

    def tab_one() -> str:
        pieces = []
        for piece in first:
            pieces.append(piece)
            streaming.set()
        return "".join(pieces)

    thread, box = run_in_thread(tab_one)
    assert streaming.wait(30)
    second = service.send(pk, "me too")
    assert list(second) == [] and second.outcome == "failed"
    assert "still answering another message" in str(second.error)
    thread.join(30)
    assert box.get("result") == LONG and first.outcome == "answered"
    assert [m["content"] for m in service.open(pk).messages] == ["long one", LONG]  # "me too" not half-stored
    llm_server.reset()
    again = service.send(pk, "me too")
    assert "".join(again) == "Echo: me too" and again.outcome == "answered"


@pytest.mark.parametrize("round_", range(2))
def test_first_turns_at_once_with_tracking_on(make_service, tmp_path, round_):
    """A fresh install (no tracker folder yet) where many users send their first message at once."""
    service = make_service(BURROW_TRACKER_PROJECT="burrow", BURROW_TRACKER_DIR=str(tmp_path / f"tracker-{round_}"),
                           BURROW_MAX_RUNS="12")
    start = threading.Barrier(12)
    turns = [service.send(service.new_conversation_id(), f"first message {i}") for i in range(12)]
    threads = [run_in_thread(lambda turn=turn: (start.wait(), "".join(turn))[1]) for turn in turns]
    for thread, box in threads:
        thread.join(30)
        assert "error" not in box, box["error"]
    assert [t.error for t in turns if t.outcome != "answered"] == []
    assert len(list((tmp_path / f"tracker-{round_}" / "burrow").iterdir())) == 12  # one folder per branch


def test_tracker_folders_are_created_without_a_race(tmp_path):
    """The same race, pinned down: 16 threads create a fresh project's folders at the same moment."""
    for round_ in range(40):
        client = ResumingTrackingClient(project="burrow", storage_dir=str(tmp_path / str(round_)))
        start, failures = threading.Barrier(16), []

        def create(app_id: str) -> None:
            start.wait()
            try:
                client._ensure_dir_structure(app_id)  # what post_application_create does first
            except OSError as exc:
                failures.append(exc)

        threads = [threading.Thread(target=create, args=(f"app-{i}",)) for i in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert failures == [] and len(list((tmp_path / str(round_) / "burrow").iterdir())) == 16


def test_stop_pressed_on_another_server_stops_the_reply(make_service, llm_server):
    """B shows A's reply as being written elsewhere; B's Stop reaches A through the lease's heartbeat."""
    a, b = make_service(), make_service()
    pk = a.new_conversation_id()
    llm_server.reply, llm_server.chunk_delay = LONG, 0.2  # 6 s of streaming
    run = a.send(pk, "a long one")
    deadline = threading.Event()
    while not run.text and not deadline.wait(0.05):
        pass
    view = b.open(pk)
    assert view.replying_elsewhere and view.run is None and view.unanswered == ()
    assert pk in b.replying([pk, "someone-else"])
    assert b.stop_elsewhere(pk)
    assert run.wait(5) and run.outcome == "stopped"  # within a heartbeat, long before the 6 s reply ends
    last = b.open(pk).messages[-1]
    assert last["status"] == "stopped" and last["content"] == run.text and len(run.text.split()) < 30
    assert not b.stop_elsewhere(pk)  # nobody is writing any more
    assert not b.open(pk).replying_elsewhere
