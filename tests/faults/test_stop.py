"""Stop during streaming: the model call really ends (the server's connection closes long before the
reply would be complete), the partial reply is kept marked "stopped", and the next message works.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from core.facts import without_facts
from core.actions import STOPPED
from tests.support.fake_openai import FakeOpenAI

WORDS = 400
CHUNK_DELAY = 0.05  # the whole reply would take WORDS * CHUNK_DELAY = 20 s to stream
PROC_TCP = Path("/proc/net/tcp")
OPEN_STATES = {"01", "08"}  # ESTABLISHED, CLOSE_WAIT: the server still holds the connection


def server_connections(port: int) -> int:
    """Connections the fake server's side still has open (Linux /proc; loopback is IPv4 here)."""
    count = 0
    for line in PROC_TCP.read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] in OPEN_STATES:
            count += 1
    return count


def wait_until(condition, within: float = 5.0) -> bool:
    """Polls a condition; the bound is a quarter of the time a finished stream would need."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


@pytest.fixture
def slow_server():
    """A server of its own, so no other test's pooled connection is counted."""
    if not PROC_TCP.exists():
        pytest.skip("needs Linux /proc/net/tcp to watch the connection")
    with FakeOpenAI(" ".join(f"w{i}" for i in range(WORDS)), chunk_delay=CHUNK_DELAY) as server:
        yield server


def port_of(server: FakeOpenAI) -> int:
    return int(server.base_url.split(":")[2].split("/")[0])


def check_after_stop(service, pk: str, turn, received: list[str], port: int) -> None:
    assert turn.outcome == "stopped" and turn.error is None
    assert wait_until(lambda: server_connections(port) == 0), "the model's HTTP stream was not closed"
    view = service.open(pk)
    assert without_facts(view.messages[-1]) == {"role": "assistant", "content": "".join(received), "status": STOPPED}
    assert 2 <= len(received) < WORDS / 4
    assert view.failed_step is None and view.pending_step is None
    last = service.snapshots(pk, turn.app_id, limit=1, newest_first=True)[0]
    assert (last.position, last.status) == ("ai_response", "completed")


def check_next_message_works(service, pk: str, server: FakeOpenAI) -> None:
    server.reply, server.chunk_delay = "Fine, short this time.", 0
    nxt = service.send(pk, "shorter please")
    assert "".join(nxt) == "Fine, short this time." and nxt.outcome == "answered"
    messages = service.open(pk).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert "status" not in messages[-1]
    # the stopped reply is part of what the model sees next (without our status key)
    sent = server.requests[-1]["messages"]
    assert sent[2] == {"role": "assistant", "content": messages[1]["content"]}


def test_stop_button_from_another_thread_ends_the_model_call(make_service, slow_server):
    """Like the UI's Stop: another thread calls turn.stop() while the reply streams."""
    service = make_service(base_url=slow_server.base_url)
    pk = service.new_conversation_id()
    turn = service.send(pk, "a long story, please")
    received: list[str] = []
    three = threading.Event()

    def consume() -> None:
        for piece in turn:
            received.append(piece)
            if len(received) == 3:
                three.set()

    reader = threading.Thread(target=consume)
    reader.start()
    assert three.wait(10)
    assert server_connections(port_of(slow_server)) == 1  # streaming right now
    turn.stop()
    reader.join(10)
    assert not reader.is_alive()
    check_after_stop(service, pk, turn, received, port_of(slow_server))
    check_next_message_works(service, pk, slow_server)


def test_leaving_the_page_mid_stream_does_not_end_the_reply(make_service, slow_server):
    """A Streamlit rerun or a closed tab only stops that client's reading: the reply goes on, another
    client (a second tab, a reload) attaches and sees it from the first word, and Stop still works."""
    service = make_service(base_url=slow_server.base_url)
    pk = service.new_conversation_id()
    turn = service.send(pk, "a long story, please")
    stream = iter(turn)
    received = [next(stream), next(stream)]
    stream.close()
    assert wait_until(lambda: len(turn.text.split()) >= 6) and not turn.done  # still streaming, nobody reading
    assert server_connections(port_of(slow_server)) == 1
    again = service.active_run(pk)
    assert again is turn and service.open(pk).run is turn
    replay = iter(again)
    assert [next(replay), next(replay)] == received  # everything so far, then the live tail
    assert service.stop(turn.id)
    everything = received + list(replay)
    check_after_stop(service, pk, turn, everything, port_of(slow_server))
    assert not service.stop(turn.id)  # a finished run cannot be stopped again
    check_next_message_works(service, pk, slow_server)
