"""Burr's local tracker: a turn is written to the tracker folder, and the API key is written nowhere."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.chat import ChatService
from core.llm import OfflineModel
from core.settings import Settings

SECRET = "sk-test-SECRET123"
PROJECT = "burrow-test"


@pytest.fixture
def tracked_service(monkeypatch, tracker_dir: Path, sqlite_url: str, llm_server):
    """Configured the way a user does it: through the environment, with a real key and base URL."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("BURROW_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("BURROW_TRACKER_DIR", str(tracker_dir))
    monkeypatch.setenv("BURROW_TRACKER_PROJECT", PROJECT)
    monkeypatch.setenv("BURROW_MAX_RETRIES", "0")
    service = ChatService.from_settings(Settings.load())
    yield service
    service.persister.engine.dispose()


def log_entries(app_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (app_dir / "log.jsonl").read_text(encoding="utf-8").splitlines() if line]


def files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def test_a_turn_is_written_to_the_local_tracker(tracked_service, tracker_dir, llm_server):
    llm_server.reply = "tracked reply"
    turn = tracked_service.send("conv-tracked", "hello tracker")
    assert "".join(turn) == "tracked reply"

    app_dir = tracker_dir / PROJECT / turn.app_id
    assert (app_dir / "graph.json").is_file() and (app_dir / "metadata.json").is_file()
    entries = log_entries(app_dir)
    begun = [e["action"] for e in entries if e["type"] == "begin_entry"]
    ended = [e["action"] for e in entries if e["type"] == "end_entry"]
    assert begun == ["human_input", "safety_check", "ai_response"]
    assert ended == begun
    assert all(e.get("exception") in (None, "") for e in entries if e["type"] == "end_entry")
    metadata = json.loads((app_dir / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["partition_key"] == "conv-tracked"
    graph = json.loads((app_dir / "graph.json").read_text(encoding="utf-8"))
    assert {a["name"] for a in graph["actions"]} == {"human_input", "safety_check", "ai_response", "unsafe_response"}


def test_a_second_turn_appends_to_the_same_run(tracked_service, tracker_dir):
    first = tracked_service.send("conv-tracked", "one")
    list(first)
    second = tracked_service.send("conv-tracked", "this is unsafe")
    list(second)
    assert second.app_id == first.app_id
    begun = [e["action"] for e in log_entries(tracker_dir / PROJECT / first.app_id) if e["type"] == "begin_entry"]
    assert begun[3:] == ["human_input", "safety_check", "unsafe_response"]


def test_the_api_key_is_in_no_tracker_file_and_not_in_the_database(tracked_service, tracker_dir, sqlite_url, llm_server):
    list(tracked_service.send("conv-secret", "hello"))
    llm_server.fail_next(401)  # a failed step: the tracker logs the error too
    failed = tracked_service.send("conv-secret", "again")
    list(failed)
    assert failed.outcome == "failed" and failed.error.kind == "auth"
    assert SECRET not in str(failed.error)
    assert llm_server.received_headers[0]["authorization"] == f"Bearer {SECRET}"  # the key really was in use

    tracked = files_under(tracker_dir)
    assert any(path.name == "log.jsonl" for path in tracked)
    for path in tracked:
        assert SECRET.encode() not in path.read_bytes(), path
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    db_files = [p for p in database.parent.iterdir() if p.name.startswith(database.name)]  # with -wal, -shm
    assert database in db_files
    for path in db_files:
        assert SECRET.encode() not in path.read_bytes(), path
    saved = json.dumps(tracked_service.persister.load_serialized("conv-secret", failed.app_id))
    assert SECRET not in saved


def test_tracking_off_writes_nothing(monkeypatch, tracker_dir, sqlite_url):
    settings = Settings.load({"BURROW_DATABASE_URL": sqlite_url, "BURROW_TRACKER_DIR": str(tracker_dir),
                              "BURROW_TRACKER_PROJECT": "off"})
    service = ChatService.from_settings(settings, model=OfflineModel(word_delay=0))
    try:
        turn = service.send("conv", "hi")
        assert "".join(turn) and turn.outcome == "answered"
    finally:
        service.persister.engine.dispose()
    assert files_under(tracker_dir) == []
