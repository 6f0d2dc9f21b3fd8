"""Runs (core/runs.py) as clients see them: a reply outlives the client that asked for it.

A run goes on after its client detaches; any number of clients attach to it and each sees every
event once, in order, from wherever it starts; Stop from any client ends it with the partial reply
saved as stopped; the per-process run limit refuses with a clear message and frees up again;
closing the service stops what is running and refuses new work; and a thousand turns leave no
thread or run behind. The offline model keeps these fast and free of any network.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from core.facts import without_facts
from core.actions import STOPPED
from core.chat import ChatService
from core.errors import BusyError
from core.llm import OfflineModel
from core.runs import KEEP_FINISHED, EventKind, Run, RunEvent
from core.settings import Settings
from core.storage import SQLAlchemyPersister

SLOW = 0.03  # seconds per word: the offline reply (~45 words) takes over a second to stream


@pytest.fixture
def make(sqlite_url) -> Iterator[Callable[..., ChatService]]:
    """ChatServices on the test's SQLite file, tracking off, with an offline model of a given speed."""
    made: list[ChatService] = []

    def build(word_delay: float = SLOW, **settings) -> ChatService:
        service = ChatService.from_settings(Settings(database_url=sqlite_url, tracker_project=None, **settings),
                                            model=OfflineModel(word_delay=word_delay))
        made.append(service)
        return service

    yield build
    for service in made:
        service.close()


def full_reply(service: ChatService, partition_key: str) -> str:
    return service.open(partition_key).messages[-1]["content"]


def expected_reply(question: str, turns: int = 1) -> str:
    return OfflineModel().reply_text([{"role": "user", "content": question}] * turns)


def real_events(run: Run, after: int = -1, heartbeat: float | None = None) -> list[RunEvent]:
    return [event for event in run.events(after, heartbeat) if event is not None]


def wait_for_pieces(run: Run, count: int, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while len([e for e in real_events_so_far(run) if e.kind is EventKind.DELTA]) < count:
        assert time.monotonic() < deadline, f"the run produced fewer than {count} pieces in {within} s"
        time.sleep(0.01)


def real_events_so_far(run: Run) -> list[RunEvent]:
    """The events published so far, without blocking (a heartbeat of 0 returns None at the live end)."""
    found = []
    for event in run.events(heartbeat=0):
        if event is None:
            break
        found.append(event)
    return found


def check_event_order(events: list[RunEvent]) -> None:
    assert [e.index for e in events] == list(range(len(events)))  # 0..n, no gap, no repeat
    kinds = [e.kind for e in events]
    assert kinds[0] is EventKind.STARTED and kinds[-1] is EventKind.DONE
    assert kinds.count(EventKind.DONE) == 1


@pytest.mark.timeout(30)
def test_a_run_goes_on_after_its_client_detaches(make):
    service = make()
    pk = service.new_conversation_id()
    run = service.send(pk, "keep going without me")
    pieces = iter(run)
    first = next(pieces)
    pieces.close()  # the client leaves (a rerun, a closed tab): only its loop ends
    assert not run.done, "the run ended with its first client"
    assert service.active_run(pk) is run
    assert run.wait(20) and run.outcome == "answered"
    assert run.text.startswith(first) and run.text == expected_reply("keep going without me")
    assert full_reply(service, pk) == run.text  # saved in full, nobody watching
    assert service.active_run(pk) is None and service.run(run.id) is run  # still found by id when done
    assert "".join(run) == run.text  # a late attacher gets the whole reply


@pytest.mark.timeout(30)
def test_a_view_read_while_its_run_ends_still_has_the_reply(make, monkeypatch):
    """The run saves its reply, then leaves the active list: a read that missed the reply must not also
    miss the run (the page would show the question with neither a reply nor a live run to follow)."""
    service = make()
    pk = service.new_conversation_id()
    run = service.send(pk, "finish while they look")
    wait_for_pieces(run, 2)
    reader, real_load = threading.current_thread(), SQLAlchemyPersister.load

    def load_then_let_the_run_end(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        found = real_load(self, *args, **kwargs)
        if threading.current_thread() is reader:
            assert run.wait(20)  # the reply is saved and the run gone before open() looks for runs
        return found

    monkeypatch.setattr(SQLAlchemyPersister, "load", load_then_let_the_run_end)
    view = service.open(pk)
    assert [m["role"] for m in view.messages] == ["user", "assistant"]
    assert view.messages[-1]["content"] == expected_reply("finish while they look")
    assert view.run is None and view.live_runs == () and view.unanswered == ()


@pytest.mark.timeout(30)
def test_two_clients_see_the_whole_reply_in_order(make):
    service = make()
    pk = service.new_conversation_id()
    run = service.send(pk, "two tabs watch me")
    seen: dict[str, list[RunEvent]] = {}

    def client(name: str, heartbeat: float | None) -> None:
        seen[name] = real_events(service.run(run.id), heartbeat=heartbeat)

    early = threading.Thread(target=client, args=("early", None))
    early.start()
    wait_for_pieces(run, 5)  # the second tab attaches midway: it first gets what it missed
    late = threading.Thread(target=client, args=("late", 0.005))  # with keep-alives, which are skipped
    late.start()
    early.join(20), late.join(20)
    assert run.done and run.outcome == "answered"

    events = seen["early"]
    check_event_order(events)
    assert seen["late"] == events
    deltas = "".join(e.data["text"] for e in events if e.kind is EventKind.DELTA)
    assert deltas == run.text == full_reply(service, pk) == expected_reply("two tabs watch me")
    assert [e.kind for e in events][-2:] == [EventKind.COMPLETED, EventKind.DONE]
    assert events[-1].data == {"outcome": "answered"}
    for k in (-1, 0, 3, len(events) // 2, len(events) - 2):  # a reconnect with Last-Event-ID k
        assert real_events(run, after=k) == events[k + 1:]


@pytest.mark.timeout(30)
def test_attaching_after_the_last_event_of_a_finished_run_ends_at_once(make):
    """An SSE client reconnects with Last-Event-ID = the DONE event's id (browsers reconnect by
    themselves when the server closes the stream): there is nothing more, so the stream must end,
    not send keep-alives forever (or, without a heartbeat, block forever)."""
    service = make(word_delay=0)
    run = service.send(service.new_conversation_id(), "done already")
    assert run.wait(10)
    last = real_events(run)[-1]
    assert last.kind is EventKind.DONE
    stream = run.events(after=last.index, heartbeat=0.01)
    got = [event for _, event in zip(range(50), stream)]  # at most 50 items, ~0.5 s of keep-alives
    assert got == [], f"events(after=DONE) did not end: it yielded {len(got)} keep-alives and goes on"


@pytest.mark.timeout(30)
def test_resuming_after_k_while_the_run_is_live_misses_nothing(make):
    service = make()
    run = service.send(service.new_conversation_id(), "resume me")
    wait_for_pieces(run, 3)
    head = real_events_so_far(run)
    k = head[-1].index
    tail = real_events(run, after=k)
    check_event_order(head + tail)
    assert tail[0].index == k + 1
    assert "".join(e.data["text"] for e in head + tail if e.kind is EventKind.DELTA) == run.text


@pytest.mark.timeout(30)
def test_stop_from_a_second_client_ends_the_run(make):
    service = make()
    pk = service.new_conversation_id()
    run = service.send(pk, "stop me from another tab")
    received: list[str] = []
    watcher = threading.Thread(target=lambda: received.extend(run))  # the first tab watches
    watcher.start()
    wait_for_pieces(run, 3)
    other_tab = service.active_run(pk)  # the second tab finds the run by its conversation
    assert other_tab is run
    assert service.stop(other_tab.id) is True
    watcher.join(10)
    assert not watcher.is_alive(), "the watching client was not released by Stop"
    assert run.outcome == "stopped" and run.error is None
    assert "".join(received) == run.text and 3 <= len(received) < len(expected_reply("x").split())
    view = service.open(pk)
    assert without_facts(view.messages[-1]) == {"role": "assistant", "content": run.text, "status": STOPPED}
    assert view.pending_step is None and view.unanswered == ()
    assert service.stop(run.id) is False  # a finished run cannot be stopped again
    assert service.stop("no-such-run") is False
    again = service.send(pk, "and now a full one")
    assert again.wait(20) and again.outcome == "answered"


@pytest.mark.timeout(30)
def test_the_run_limit_refuses_clearly_and_frees_up(make):
    service = make(max_runs=2)  # BURROW_MAX_RUNS=2
    first, second = (service.send(service.new_conversation_id(), f"busy {i}") for i in (1, 2))
    with pytest.raises(BusyError) as refused:
        service.send(service.new_conversation_id(), "one too many")
    message = str(refused.value)
    assert "BURROW_MAX_RUNS" in message and "2" in message and "try again" in message
    assert not first.done and not second.done  # refusing the third did not disturb the others
    first.stop()
    assert first.wait(10) and first.outcome == "stopped"
    deadline = time.monotonic() + 5
    while len(service.runs.active()) > 1:  # the worker gives its slot back just after DONE (see below)
        assert time.monotonic() < deadline, "a finished run kept its slot"
        time.sleep(0.01)
    third = service.send(service.new_conversation_id(), "now there is room")
    assert third.wait(20) and third.outcome == "answered"
    assert second.wait(20) and second.outcome == "answered"


class SlowWorkers:
    """The run manager's lock, reached a little later by worker threads: a busy machine's scheduling,
    made certain. Nothing else changes; a worker takes this lock only after its run is done."""

    def __init__(self, lock):
        self._lock = lock

    def __enter__(self):
        if threading.current_thread().name.startswith("burrow-run-"):
            time.sleep(0.05)
        return self._lock.__enter__()

    def __exit__(self, *exc_info):
        return self._lock.__exit__(*exc_info)


@pytest.mark.timeout(30)
def test_a_slot_is_free_as_soon_as_a_waiter_sees_its_run_done(make, monkeypatch):
    """A client that waited for its run and sends the next message at once must not be told "busy"
    (with BURROW_MAX_RUNS=1 that is every conversation typed one message after another). The worker
    publishes DONE before it gives its slot back, so a waiter can wake up in between: about 1 send
    in 1,500 on an idle machine; here the worker is made to reach that step 50 ms late."""
    service = make(word_delay=0, max_runs=1)
    monkeypatch.setattr(service.runs, "_lock", SlowWorkers(service.runs._lock))
    pk = service.new_conversation_id()
    for index in range(3):
        run = service.send(pk, f"turn {index}")
        assert run.wait(10) and run.outcome == "answered", (run.outcome, run.error)


@pytest.mark.timeout(30)
def test_close_stops_running_runs_and_refuses_new_ones(make, sqlite_url):
    service = make()
    keys = [service.new_conversation_id() for _ in range(2)]
    runs = [service.send(pk, f"close on me {i}") for i, pk in enumerate(keys)]
    for run in runs:
        wait_for_pieces(run, 3)
    service.close()
    assert all(run.done for run in runs), "close() returned with runs still going"
    assert [run.outcome for run in runs] == ["stopped", "stopped"]
    with pytest.raises(BusyError, match="shutting down"):
        service.send(service.new_conversation_id(), "too late")
    with pytest.raises(BusyError):
        service.retry(keys[0])
    reopened = make()  # what a restarted server finds
    for pk, run in zip(keys, runs):
        view = reopened.open(pk)
        assert without_facts(view.messages[-1]) == {"role": "assistant", "content": run.text, "status": STOPPED}
        assert 0 < len(run.text) < len(expected_reply("close on me 0"))
        assert view.unanswered == () and view.pending_step is None
    service.close()  # a second close is harmless


def burrow_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith(("burrow-run-", "burrow-leases")))


@pytest.mark.timeout(60)
def test_a_thousand_turns_leave_no_run_or_thread_behind(make):
    deadline = time.monotonic() + 5  # earlier tests' lease heartbeats end within TTL/3 s of their last turn
    while burrow_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert burrow_threads() == []
    service = make(word_delay=0, max_runs=4)
    service.runs.keep_finished = KEEP_FINISHED // 8  # fewer than the thousand turns: the bound is reached
    before = set(threading.enumerate())
    first_run_id: str | None = None
    last: Run | None = None
    turns, batch = 1000, 4
    for start in range(0, turns, batch):  # four conversations at a time, each up to 25 turns long
        group = start // 100
        runs = [service.send(f"leak-{group}-{lane}", f"turn {start + lane}") for lane in range(batch)]
        for run in runs:
            assert run.wait(10) and run.outcome == "answered", (run.outcome, run.error)
        first_run_id = first_run_id or runs[0].id
        last = runs[-1]
        deadline = time.monotonic() + 5
        while service.runs.active():  # slots are given back just after DONE
            assert time.monotonic() < deadline
            time.sleep(0.001)
    assert service.runs.active() == []
    assert not [name for name in burrow_threads() if name.startswith("burrow-run-")]
    assert service.run(last.id) is last and service.run(first_run_id) is None  # finished runs: bounded memory
    assert len(service.runs._finished) == KEEP_FINISHED // 8
    deadline = time.monotonic() + 5  # the lease heartbeat ends by itself once no lease is held
    while burrow_threads() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert burrow_threads() == []
    assert set(threading.enumerate()) - before == set()  # nothing it started is left (others may have ended)
    assert service.replying([f"leak-{g}-{lane}" for g in range(10) for lane in range(batch)]) == set()
    assert len(service.open("leak-9-3").messages) == 50
