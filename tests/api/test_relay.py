"""core/relay.py on a real PostgreSQL server: two relays (as two processes would have) pass a run's
events from the process that owns it to one that follows it, replayed from the start and then live.
(These tests publish the owner's events themselves, as the service's hook does with BURROW_RELAY=true;
tests/api/test_workers.py runs the whole path through two server processes.)"""
from __future__ import annotations

import threading
import time

import pytest

from core.relay import MAX_PAYLOAD, Relay
from core.runs import EventKind, Run

pytestmark = pytest.mark.postgres


@pytest.fixture
def relays(pg_url):
    made = [Relay.for_url(pg_url), Relay.for_url(pg_url)]
    yield made
    for relay in made:
        relay.close()


def so_far(run) -> list:
    """The events a run (or relayed run) has now, without waiting for more."""
    found = []
    for event in run.events(heartbeat=0):
        if event is None:
            break
        found.append(event)
    return found


def owned_run(relay: Relay) -> tuple[Run, callable]:
    """A run of the "owning process", whose every event also goes to the relay."""
    run = Run("conversation-1", "branch-1")
    relay.serve({run.id: run}.get)

    def publish(kind: EventKind, **data) -> None:
        run.publish(kind, **data)
        relay.publish(run, so_far(run)[-1])
    return run, publish


def test_a_follower_gets_the_whole_run_replayed_then_live(relays):
    owner, other = relays
    run, publish = owned_run(owner)
    publish(EventKind.STARTED, partition_key=run.partition_key, app_id=run.app_id)
    words = [f" w{n}" for n in range(60)]
    for word in words[:5]:
        publish(EventKind.DELTA, text=word)
    relayed = other.follow(run.id)
    assert relayed is not None and relayed.partition_key == "conversation-1"
    seen: list = []
    reader = threading.Thread(target=lambda: seen.extend(e for e in relayed.events(heartbeat=0.2) if e is not None))
    reader.start()
    for word in words[5:]:
        publish(EventKind.DELTA, text=word)
        time.sleep(0.002)
    publish(EventKind.COMPLETED, message={"role": "assistant", "content": "".join(words)}, sequence_id=3)
    run.finish("answered")
    owner.publish(run, so_far(run)[-1])
    reader.join(10)
    assert [e.index for e in seen] == list(range(len(words) + 3))
    assert "".join(e.data["text"] for e in seen if e.kind is EventKind.DELTA) == "".join(words)
    assert seen[-1].kind is EventKind.DONE and relayed.done and relayed.outcome == "answered"
    # a late follower (another reconnect) gets it all again, and attaching after the end ends at once
    again = other.follow(run.id)
    assert again is relayed and list(again.events(after=seen[-1].index)) == []


def test_an_unknown_run_is_nobody_s(relays):
    assert relays[1].follow("0" * 32, within=0.5) is None


def test_an_event_too_large_for_notify_goes_without_its_data(relays):
    owner, other = relays
    run, publish = owned_run(owner)
    publish(EventKind.STARTED)
    relayed = other.follow(run.id)
    publish(EventKind.COMPLETED, message={"content": "x" * (MAX_PAYLOAD * 2)}, sequence_id=7)
    deadline = time.monotonic() + 5
    while len(so_far(relayed)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    completed = so_far(relayed)[1]
    assert completed.data == {"relayed_without_data": True, "sequence_id": 7}


def test_no_relay_on_sqlite(sqlite_url):
    assert Relay.for_url(sqlite_url) is None
