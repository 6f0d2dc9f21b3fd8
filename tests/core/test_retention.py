"""Retention (core/retention.py) on SQLite and PostgreSQL: idle unpinned conversations go, with their
Burr tracker files; pinned and recent ones stay; a dry run deletes nothing; on PostgreSQL one process
prunes at a time (the advisory lock); the periodic pruner. A fake clock is the `now=` parameter."""
from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from core.chat import ChatService
from core.errors import BusyError
from core.llm import OfflineModel
from core.retention import LOCK_KEY, prune, start_pruning
from core.settings import Settings, SettingsError

DAYS = 30


def make_service(db_url: str, tracker: Path, days: float | None = DAYS) -> ChatService:
    settings = Settings(database_url=db_url, tracker_dir=str(tracker), retention_days=days)
    return ChatService.from_settings(settings, model=OfflineModel(0))


@pytest.fixture
def service(db_url, tmp_path):
    svc = make_service(db_url, tmp_path / "burr")
    yield svc
    svc.close()


def chat(service: ChatService, text_: str) -> str:
    key = service.new_conversation_id()
    assert service.send(key, text_).wait(10)
    return key


def tracker_folders(service: ChatService) -> set[str]:
    runs = Path(service.settings.tracker_dir) / "burrow"
    return {p.name for p in runs.iterdir() if p.is_dir()} if runs.exists() else set()


def when_newest_is(service: ChatService, key: str, idle_days: float) -> datetime:
    """The fake clock: the moment at which conversation `key` has been idle for `idle_days`."""
    return service.conversation(key).updated_at + timedelta(days=idle_days)


def test_idle_unpinned_conversations_go_with_their_tracker_files_and_the_rest_stays(service):
    old, old_pinned, recent = chat(service, "old"), chat(service, "old but pinned"), chat(service, "recent")
    assert service.pin(old_pinned, True)
    assert len(tracker_folders(service)) == 3
    now = when_newest_is(service, recent, DAYS)  # recent is exactly 30 days idle: not yet "older than"
    assert prune(service, now=now - timedelta(days=1)) == []  # a day earlier nothing is old enough
    gone = prune(service, now=now)
    assert [item.partition_key for item in gone] == [old]
    assert service.conversation(old) is None and service.conversation(old_pinned) is not None
    assert service.conversation(recent) is not None
    assert len(tracker_folders(service)) == 2
    assert prune(service, now=now) == []  # nothing left to do
    later = prune(service, now=now + timedelta(seconds=1))
    assert [item.partition_key for item in later] == [recent]  # the pinned one is kept for ever
    assert [c.partition_key for c in service.conversations()] == [old_pinned]


def test_a_dry_run_lists_what_would_go_and_deletes_nothing(service):
    old, recent = chat(service, "old"), chat(service, "recent")
    now = when_newest_is(service, recent, DAYS)
    listed = prune(service, now=now, dry_run=True)
    assert [(item.partition_key, item.title) for item in listed] == [(old, "old")]
    assert {c.partition_key for c in service.conversations()} == {old, recent}
    assert len(tracker_folders(service)) == 2
    assert [item.partition_key for item in prune(service, now=now)] == [old]


def test_a_conversation_written_to_again_is_no_longer_idle(service):
    old, recent = chat(service, "old"), chat(service, "recent")
    now = when_newest_is(service, recent, DAYS)
    assert [item.partition_key for item in prune(service, now=now, dry_run=True)] == [old]
    assert service.send(old, "still here").wait(10)
    assert prune(service, now=now) == []
    assert service.conversation(old) is not None


def test_many_conversations_are_paged_through(service, monkeypatch):
    keys = [chat(service, f"chat {n}") for n in range(7)]
    for key in keys[::3]:
        service.pin(key, True)
    monkeypatch.setattr("core.retention.PAGE", 2)  # pages end on pinned rows and across the boundary
    listed = prune(service, now=when_newest_is(service, keys[-1], DAYS + 1), dry_run=True)
    assert sorted(item.partition_key for item in listed) == sorted(k for k in keys if k not in keys[::3])


def test_retention_off_prunes_nothing_and_starts_nothing(db_url, tmp_path):
    service = make_service(db_url, tmp_path / "burr", days=None)
    try:
        key = chat(service, "kept")
        assert prune(service, now=when_newest_is(service, key, 10_000)) == []
        stop = start_pruning(service, every_seconds=0.01)
        stop()
        assert service.conversation(key) is not None
    finally:
        service.close()


@pytest.mark.parametrize("value", ["0", "-3", "soon", "nan"])
def test_a_bad_retention_setting_is_a_clear_startup_error(value):
    with pytest.raises(SettingsError, match="BURROW_RETENTION_DAYS"):
        Settings.load({"BURROW_RETENTION_DAYS": value})
    assert Settings.load({"BURROW_RETENTION_DAYS": "0.5"}).retention_days == 0.5
    assert Settings.load({"BURROW_RETENTION_DAYS": ""}).retention_days is None


def test_on_postgresql_a_prune_is_skipped_while_another_process_holds_the_lock(pg_url, tmp_path):
    service = make_service(pg_url, tmp_path / "burr")
    other = create_engine(pg_url, poolclass=NullPool)  # another process's session
    try:
        old, recent = chat(service, "old"), chat(service, "recent")
        now = when_newest_is(service, recent, DAYS)
        with other.connect() as conn:
            assert conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
            assert prune(service, now=now) == [] and service.conversation(old) is not None
            assert prune(service, now=now, dry_run=True) == []
            with pytest.raises(BusyError, match="Another process is pruning"):  # `burrow prune` says so
                prune(service, now=now, skip_if_busy=False)
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
        assert [item.partition_key for item in prune(service, now=now)] == [old]
        with other.connect() as conn:  # the prune let go of its lock: another process can take it
            assert conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
    finally:
        other.dispose()
        service.close()


def test_the_pruner_runs_on_start_and_again_periodically(db_url, tmp_path):
    service = make_service(db_url, tmp_path / "burr", days=1 / 86400)  # one second
    try:
        first = chat(service, "first")
        time.sleep(1.2)
        stop = start_pruning(service, every_seconds=3)
        try:
            assert wait_until(lambda: service.conversation(first) is None, 1.5)  # on start, before a period
            second = chat(service, "second")
            assert service.conversation(second) is not None
            assert wait_until(lambda: service.conversation(second) is None, 10)  # a later round
        finally:
            stop()
    finally:
        service.close()


def wait_until(condition, seconds: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
