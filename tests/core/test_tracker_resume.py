"""A conversation stored by one server must open on another whose Burr tracker folder has never seen it
(two processes on one database, a cleared ~/.burr, a restored backup), and forks keep their parent."""
from __future__ import annotations

import json
from pathlib import Path

from core.chat import ChatService
from core.llm import OfflineModel
from core.settings import Settings


def make_service(database_url: str, tracker_dir: Path) -> ChatService:
    return ChatService.from_settings(Settings(database_url=database_url, tracker_dir=str(tracker_dir)),
                                     model=OfflineModel(word_delay=0))


def test_a_second_tracker_folder_resumes_a_stored_conversation(sqlite_url, tmp_path):
    first = make_service(sqlite_url, tmp_path / "tracker-a")
    key = first.new_conversation_id()
    turn = first.send(key, "hello from server A")
    list(turn)
    assert turn.outcome == "answered"

    second = make_service(sqlite_url, tmp_path / "tracker-b")
    turn = second.send(key, "hello from server B")
    list(turn)
    assert (turn.outcome, turn.error) == ("answered", None)
    contents = [m["content"] for m in second.open(key).messages if m["role"] == "user"]
    assert contents == ["hello from server A", "hello from server B"]


def test_a_fork_opened_by_a_fresh_tracker_keeps_its_parent_pointer(sqlite_url, tmp_path):
    first = make_service(sqlite_url, tmp_path / "tracker-a")
    key = first.new_conversation_id()
    list(first.send(key, "one"))
    original = first.open(key).app_id

    second = make_service(sqlite_url, tmp_path / "tracker-b")
    branch = second.fork(key, original, 2)
    metadata = json.loads((tmp_path / "tracker-b" / "burrow" / branch / "metadata.json").read_text())
    assert metadata["parent_pointer"]["app_id"] == original
    assert metadata["parent_pointer"]["sequence_id"] == 2
