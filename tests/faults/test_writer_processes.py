"""Writers in real OS processes on one conversation: turns never interleave, none is lost, and a
writer killed with SIGKILL mid-reply stalls the conversation for one lease TTL at most.

Each writer is `python -m tests.support.writer_process` (its own interpreter, engine and lease
heartbeat), talking to the session's fake OpenAI server, whose default reply echoes the question,
so every reply can be paired with its own message.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.chat import ChatService
from core.storage.leases import LeaseStore
from core.writers import LEASE_SECONDS

REPO = Path(__file__).resolve().parents[2]
# Ten writers queue on one branch, and lease polling is not first-come first-served: one writer may
# wait behind many turns. The wait limit is 2 x the request timeout; 30 s keeps it far from that.
WRITER_ENV = ["BURROW_REQUEST_TIMEOUT=30"]


class Writer:
    """One writer process; its stdout goes to a file so the test can read it while it runs."""

    def __init__(self, tmp_path: Path, name: str, args: list[str]):
        self.name = name
        self.out_path, self.err_path = tmp_path / f"{name}.out", tmp_path / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.support.writer_process", "--name", name, *args],
                cwd=REPO, stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def lines(self) -> list[dict]:
        text = self.out_path.read_text() if self.out_path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def events(self, kind: str) -> list[dict]:
        return [line for line in self.lines() if line["event"] == kind]

    def wait_for(self, kind: str, within: float) -> dict:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = self.events(kind)
            if found:
                return found[0]
            if self.process.poll() is not None:
                break
            time.sleep(0.01)
        found = self.events(kind)
        assert found, f"{self.name} printed no {kind!r} within {within} s: {self.lines()[-3:]} {self.stderr()}"
        return found[0]

    def stderr(self) -> str:
        return self.err_path.read_text()[-2000:] if self.err_path.exists() else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def writers(tmp_path: Path) -> Iterator[list[Writer]]:
    """Started writers; every one still running is killed when the test ends, whatever happened."""
    started: list[Writer] = []
    yield started
    for writer in started:
        writer.kill()


def start_writer(writers: list[Writer], tmp_path: Path, name: str, db_url: str, base_url: str, pk: str,
                 turns: int, go_file: Path | None = None) -> Writer:
    args = ["--database-url", db_url, "--base-url", base_url, "--conversation", pk, "--turns", str(turns)]
    args += ["--go-file", str(go_file)] if go_file else []
    for setting in WRITER_ENV:
        args += ["--env", setting]
    writer = Writer(tmp_path, name, args)
    writers.append(writer)
    return writer


def assert_one_clean_branch(service: ChatService, pk: str, turns: int) -> list[dict]:
    """One branch, snapshots 0..3n-1 all completed (none overwritten, none skipped); its messages."""
    branches = service.branches(pk)
    assert len(branches) == 1, [b.app_id for b in branches]
    snaps = service.snapshots(pk, branches[0].app_id, limit=10 * turns)
    assert [s.sequence_id for s in snaps] == list(range(3 * turns))
    assert [s.position for s in snaps] == ["human_input", "safety_check", "ai_response"] * turns
    assert {s.status for s in snaps} == {"completed"}
    messages = service.open(pk).messages
    assert len(messages) == 2 * turns
    return messages


@pytest.mark.timeout(240)
@pytest.mark.parametrize("processes,turns", [(3, 20), (10, 20)], ids=["3x20", "10x20"])
def test_concurrent_writer_processes_on_one_conversation(processes, turns, db_url, llm_server, make_service,
                                                         writers, tmp_path):
    service = make_service()  # creates the schema before the writers start, and reads the result
    pk = service.new_conversation_id()
    go = tmp_path / "go"
    for index in range(processes):
        start_writer(writers, tmp_path, f"w{index}", db_url, llm_server.base_url, pk, turns, go)
    for writer in writers:
        writer.wait_for("ready", 60)
    began = time.monotonic()
    go.touch()  # all start at once
    for writer in writers:
        writer.process.wait(200)
    wall = time.monotonic() - began
    backend = db_url.split(":", 1)[0].split("+")[0]
    for writer in writers:
        assert writer.process.returncode == 0, (writer.name, writer.stderr())

    reports = [line for writer in writers for line in writer.events("turn")]
    seconds = sorted(line["seconds"] for line in reports)
    print(f"\n[writer processes] {backend} {processes} processes x {turns} turns: {wall:.1f} s wall, "
          f"{len(reports) / wall:.1f} turns/s, turn wall median {seconds[len(seconds) // 2]:.2f} s, "
          f"max {seconds[-1]:.2f} s")
    failed = [line for line in reports if line["outcome"] != "answered"]
    assert failed == [] and len(reports) == processes * turns
    assert all(line["reply"] == f"Echo: {line['text']}" for line in reports)  # each writer got its own reply

    messages = assert_one_clean_branch(service, pk, processes * turns)
    questions, answers = messages[::2], messages[1::2]
    assert all(m["role"] == "user" for m in questions) and all(m["role"] == "assistant" for m in answers)
    assert [a["content"] for a in answers] == [f"Echo: {q['content']}" for q in questions]  # right after its own
    assert sorted(q["content"] for q in questions) == sorted(line["text"] for line in reports)  # all, once
    for writer in writers:  # one writer's own messages stay in the order it sent them
        own = [q["content"] for q in questions if q["content"].startswith(f"{writer.name} turn ")]
        assert own == [f"{writer.name} turn {i}" for i in range(turns)]
    assert service.open(pk).unanswered == ()
    switches = sum(1 for a, b in zip(questions, questions[1:]) if a["content"].split()[0] != b["content"].split()[0])
    print(f"[writer processes] {backend} {processes}x{turns}: the history switches writer {switches} times")


@pytest.mark.timeout(120)
def test_a_writer_killed_mid_reply_stalls_the_conversation_one_lease_at_most(db_url, llm_server, make_service,
                                                                           writers, tmp_path):
    # As the app's defaults, the wait limit (2 x the request timeout) is well above the lease TTL;
    # with the fault tests' usual 2 s it would be below it (see the test after this one).
    service = make_service(BURROW_REQUEST_TIMEOUT="30")
    pk = service.new_conversation_id()
    before = service.send(pk, "before the crash")
    assert before.wait(20) and before.outcome == "answered"

    llm_server.reply = " ".join(f"slow{i}" for i in range(400))
    llm_server.chunk_delay = 0.05  # 20 s of reply: it is cut off by the kill, long before its end
    victim = start_writer(writers, tmp_path, "victim", db_url, llm_server.base_url, pk, 1)
    victim.wait_for("first_piece", 60)
    view = service.open(pk)
    assert view.messages[-1] == {"role": "user", "content": "victim turn 0"}  # its message is saved
    assert view.replying_elsewhere, "the other process's reply in progress is not seen"
    time.sleep(0.3)  # well into the reply
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(10)
    assert victim.process.returncode == -signal.SIGKILL

    llm_server.reply = llm_server._defaults["reply"]  # a fast model again: only the lease is waited for
    llm_server.chunk_delay = 0.0
    began = time.monotonic()
    after = service.send(pk, "after the crash")
    assert after.wait(30), "the next message was never answered"
    waited = time.monotonic() - began
    print(f"\n[writer processes] {db_url.split(':', 1)[0].split('+')[0]}: after kill -9 mid-reply, the next message "
          f"was answered in {waited:.2f} s (lease TTL {LEASE_SECONDS:.0f} s)")
    assert after.outcome == "answered", (after.outcome, after.error)
    assert after.text == "Echo: after the crash"
    assert waited < 10

    view = service.open(pk)
    assert [(m["role"], m["content"]) for m in view.messages] == [
        ("user", "before the crash"), ("assistant", "Echo: before the crash"),
        ("user", "victim turn 0"),  # the crashed turn's message is kept...
        ("user", "after the crash"), ("assistant", "Echo: after the crash")]
    assert view.unanswered == (2,)  # ...and reported unanswered
    assert not view.replying_elsewhere and view.pending_step is None
    assert len(service.branches(pk)) == 1


@pytest.mark.timeout(60)
def test_a_dead_writers_lease_is_waited_out_with_a_short_request_timeout(sqlite_url, build_service):
    """The same crash, made deterministic: the dead process renewed its lease just before it died.
    The next turn waits at most 2 x BURROW_REQUEST_TIMEOUT; with 2 s (a fast local model) that is
    4 s, less than the lease's 5 s TTL, so the turn gives up, "still answering another message",
    while nothing is answering. A crash must stall a conversation for one TTL, not fail its next turn."""
    service = build_service(sqlite_url, BURROW_REQUEST_TIMEOUT="2")
    pk = service.new_conversation_id()
    assert service.send(pk, "first").wait(20)
    app_id = service.branches(pk)[0].app_id
    assert LeaseStore(service.persister.database).acquire(pk, app_id, "a-process-killed-just-now", LEASE_SECONDS)
    began = time.monotonic()
    run = service.send(pk, "after the crash")
    assert run.wait(30)
    waited = time.monotonic() - began
    assert run.outcome == "answered", f"{run.outcome} after {waited:.1f} s: {run.error}"
    assert waited < LEASE_SECONDS + 2
