"""`burrow prune [--dry-run]` on SQLite and PostgreSQL: what it prints, what it deletes, exit codes.
The CLI runs on the real clock, so retention here is a second (BURROW_RETENTION_DAYS is fractional)."""
from __future__ import annotations

import time

from core.chat import ChatService
from core.llm import OfflineModel
from core.settings import Settings
from tests.test_cli import database, run_cli  # noqa: F401 - the fixture: conversation c1 in the CLI's database

SECOND = f"{1 / 86400:.10f}"


def add_pinned(db_url: str) -> None:
    service = ChatService.from_settings(Settings(database_url=db_url, tracker_project=None), model=OfflineModel(0))
    try:
        assert service.send("p1", "pinned one").wait(10)
        assert service.pin("p1", True)
    finally:
        service.close()


def listed(db_url: str) -> set[str]:
    service = ChatService.from_settings(Settings(database_url=db_url, tracker_project=None), model=OfflineModel(0))
    try:
        return {c.partition_key for c in service.conversations()}
    finally:
        service.close()


def test_a_dry_run_prints_what_would_go_then_prune_deletes_it(database, capsys, monkeypatch):
    add_pinned(database)
    monkeypatch.setenv("BURROW_RETENTION_DAYS", SECOND)
    time.sleep(1.2)
    code, out, err = run_cli(capsys, "prune", "--dry-run")
    assert code == 0, err
    [line] = out.splitlines()
    key, when, title = line.split("\t")
    assert (key, title) == ("c1", "hello there") and when.startswith("20")
    assert err.startswith("burrow: would delete 1 conversation idle for more than")
    assert listed(database) == {"c1", "p1"}
    code, out, err = run_cli(capsys, "prune")
    assert code == 0 and out.split("\t")[0] == "c1" and err.startswith("burrow: deleted 1 conversation ")
    assert listed(database) == {"p1"}  # the pinned one stays
    code, out, err = run_cli(capsys, "prune")
    assert (code, out) == (0, "") and "deleted 0 conversations" in err


def test_prune_without_retention_or_with_a_bad_value_is_a_usage_error(database, capsys, monkeypatch):
    code, out, err = run_cli(capsys, "prune")
    assert (code, out) == (2, "") and err == ("burrow: BURROW_RETENTION_DAYS is not set: every conversation is "
                                             "kept, nothing to prune\n")
    monkeypatch.setenv("BURROW_RETENTION_DAYS", "-1")
    code, out, err = run_cli(capsys, "prune", "--dry-run")
    assert code == 2 and err.startswith("burrow: BURROW_RETENTION_DAYS must be a positive number of days")
    assert listed(database) == {"c1"}


def test_prune_on_an_unreachable_database_is_exit_3(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BURROW_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("BURROW_RETENTION_DAYS", "30")
    code, out, err = run_cli(capsys, "prune")
    assert code == 3 and out == "" and err.startswith("burrow: ")
