"""Deleting a conversation's Burr tracker files: every branch of it goes, other conversations stay."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.chat import ChatService
from core.settings import Settings
from core.tracker_files import delete_tracker_runs, project_dir

PROJECT = "burrow-test"


@pytest.fixture
def tracked(tracker_dir: Path, sqlite_url: str, llm_server):
    """A service tracking into `tracker_dir`, talking to the fake model (a real Burr tracker, real files)."""
    settings = Settings.load({"BURROW_DATABASE_URL": sqlite_url, "BURROW_TRACKER_DIR": str(tracker_dir),
                              "BURROW_TRACKER_PROJECT": PROJECT, "OPENAI_BASE_URL": llm_server.base_url,
                              "OPENAI_API_KEY": "test"})
    service = ChatService.from_settings(settings)
    yield service
    service.close()


def _talk(service: ChatService, key: str, *texts: str) -> None:
    for text in texts:
        "".join(service.send(key, text))


def test_every_branch_of_the_conversation_is_removed_and_nothing_else(tracked, tracker_dir):
    key, other = tracked.new_conversation_id(), tracked.new_conversation_id()
    _talk(tracked, key, "first", "second")
    fork = tracked.fork(key, tracked.latest_branch(key), 2)
    _talk(tracked, key, "on the fork")
    _talk(tracked, other, "keep me")
    branches = tracked.branch_ids(key)
    assert fork in branches and len(branches) == 2
    runs = tracker_dir / PROJECT
    assert all((runs / app_id / "log.jsonl").is_file() for app_id in branches)

    assert delete_tracker_runs(str(tracker_dir), PROJECT, key, branches) == 2
    assert not any((runs / app_id).exists() for app_id in branches)
    kept = [folder.name for folder in runs.iterdir()]
    assert kept == tracked.branch_ids(other)  # the other conversation's run is untouched
    assert delete_tracker_runs(str(tracker_dir), PROJECT, key, branches) == 0  # already gone: nothing to do


def test_a_folder_of_another_conversation_is_never_removed(tracker_dir):
    folder = project_dir(str(tracker_dir), PROJECT) / "shared-id"
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"partition_key": "someone-else"}), encoding="utf-8")
    assert delete_tracker_runs(str(tracker_dir), PROJECT, "mine", ["shared-id"]) == 0
    assert folder.is_dir()


def test_ids_cannot_reach_outside_the_project_folder(tracker_dir):
    outside = tracker_dir / "precious"
    outside.mkdir()
    (project_dir(str(tracker_dir), PROJECT)).mkdir(parents=True)
    assert delete_tracker_runs(str(tracker_dir), PROJECT, "mine", ["../precious", "/", ".."]) == 0
    assert outside.is_dir()


def test_tracking_off_removes_nothing(tracker_dir):
    folder = tracker_dir / "burrow" / "run"
    folder.mkdir(parents=True)
    assert delete_tracker_runs(str(tracker_dir), None, "mine", ["run"]) == 0
    assert folder.is_dir()


def test_without_a_tracker_dir_it_is_burrs_default_under_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    folder = tmp_path / ".burr" / PROJECT / "run-1"
    folder.mkdir(parents=True)
    (folder / "log.jsonl").write_text("{}\n", encoding="utf-8")
    assert delete_tracker_runs(None, PROJECT, "mine", ["run-1"]) == 1
    assert not folder.exists()


def test_deleting_a_conversation_through_the_facade_removes_its_tracker_folders(tracked, tracker_dir):
    key, other = tracked.new_conversation_id(), tracked.new_conversation_id()
    _talk(tracked, key, "to be deleted")
    _talk(tracked, other, "to be kept")
    runs = tracker_dir / PROJECT
    gone, kept = tracked.branch_ids(key), tracked.branch_ids(other)
    assert all((runs / app_id).is_dir() for app_id in gone + kept)
    assert tracked.delete(key) is True
    assert not any((runs / app_id).exists() for app_id in gone)
    assert all((runs / app_id).is_dir() for app_id in kept)
