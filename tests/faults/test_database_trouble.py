"""Database trouble: read-only file, missing folder, a lock held by another program, PostgreSQL down
at start or mid-session. Each gives a clear StorageError (no traceback text, no password), writes
nothing by halves, and the same ChatService carries on once the database is back.

Read-only as root: the tests run as root, which ignores file modes, so `chmod` proves nothing.
Two ways that do fail as root are used: SQLite's own read-only open (`?mode=ro&uri=true`) and the
immutable attribute (`chattr +i`, which root must lift before writing; skipped where the file
system or the container does not allow it).
"""
from __future__ import annotations

import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.chat import ChatService
from core.errors import StorageError
from core.storage import SQLAlchemyPersister
from tests.faults.conftest import PG_PASSWORD, SECRET_KEY, service_settings, start_and_wait
from tests.support.net import free_port


def assert_clear(error: BaseException | None, *words: str) -> None:
    assert isinstance(error, StorageError), repr(error)
    message = str(error)
    assert "\n" not in message and "Traceback" not in message and len(message) < 400, message
    assert PG_PASSWORD not in message and SECRET_KEY not in message
    for word in words:
        assert word in message, (word, message)


def chat(service: ChatService, pk: str, text_: str):
    turn = service.send(pk, text_)
    list(turn)
    return turn


def stored_rows(url: str) -> dict[str, int]:
    """Row counts of every Burrow table, read with a connection of its own."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            tables = [t for t in conn.dialect.get_table_names(conn) if t.startswith("burrow_")]
            return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in tables}
    finally:
        engine.dispose()


@contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """Makes files read-only even for root (chattr +i); skips the test where that is not possible."""
    done = subprocess.run(["chattr", "+i", *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not possible here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], check=True)


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    return tmp_path / "burrow.db"


# ---- SQLite: read-only, missing folder -----------------------------------------------------------
def test_read_only_file_fails_clearly_and_recovers_once_writable(build_service, sqlite_file):
    url = f"sqlite:///{sqlite_file}"
    first = build_service(url)
    pk = first.new_conversation_id()
    assert chat(first, pk, "before").outcome == "answered"
    first.persister.engine.dispose()  # the server stops; the file becomes read-only before it starts again
    before = stored_rows(url)
    with immutable(sqlite_file):
        service = build_service(url)  # starting works: the schema is there and reading is allowed
        assert [m["content"] for m in service.open(pk).messages] == ["before", "Echo: before"]
        turn = chat(service, pk, "while read-only")
        assert turn.outcome == "failed"
        assert_clear(turn.error, "readonly", "writable")
        assert service.open(pk).messages[-1]["content"] == "Echo: before"  # read after the failure too
    assert stored_rows(url) == before  # nothing half-written
    turn = chat(service, pk, "writable again")  # the same service, no restart
    assert turn.outcome == "answered", turn.error
    assert [m["content"] for m in service.open(pk).messages][-2:] == ["writable again", "Echo: writable again"]


def test_read_only_uri_fails_clearly_and_leaves_no_stray_folder(build_service, sqlite_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    writer = build_service(f"sqlite:///{sqlite_file}")
    pk = writer.new_conversation_id()
    chat(writer, pk, "hello")
    before = stored_rows(f"sqlite:///{sqlite_file}")
    reader = build_service(f"sqlite:///file:{sqlite_file}?mode=ro&uri=true")
    assert len(reader.open(pk).messages) == 2
    turn = chat(reader, pk, "can I write?")
    assert turn.outcome == "failed"
    assert_clear(turn.error, "readonly")
    assert stored_rows(f"sqlite:///{sqlite_file}") == before
    assert not (tmp_path / "file:").exists()  # the URI is not mistaken for a folder name


def test_read_only_database_that_does_not_exist_yet(build_service, tmp_path):
    with pytest.raises(StorageError) as caught:
        build_service(f"sqlite:///file:{tmp_path / 'absent.db'}?mode=ro&uri=true")
    assert_clear(caught.value, "unable to open database file")


def test_missing_folder_is_created(build_service, tmp_path):
    url = f"sqlite:///{tmp_path / 'not' / 'there' / 'yet' / 'burrow.db'}"
    service = build_service(url)
    assert chat(service, "c1", "hello").outcome == "answered"
    assert (tmp_path / "not" / "there" / "yet" / "burrow.db").is_file()


def test_folder_that_cannot_be_created(build_service, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    with immutable(locked):
        with pytest.raises(StorageError) as caught:
            build_service(f"sqlite:///{locked / 'sub' / 'burrow.db'}")
    assert_clear(caught.value, "Cannot create the folder", str(locked / "sub"))


# ---- SQLite: another program holds the write lock ----------------------------------------------
class LockHolder:
    """Another program's connection holding SQLite's write lock (BEGIN EXCLUSIVE) until released."""

    def __init__(self, path: Path):
        self.path, self.locked, self.release = path, threading.Event(), threading.Event()
        self.snapshots_seen: int | None = None
        self.thread = threading.Thread(target=self._hold)

    def _hold(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            self.locked.set()
            self.release.wait(30)
            # what had been written while we held the lock (inside our own transaction: nothing new)
            self.snapshots_seen = conn.execute("SELECT COUNT(*) FROM burrow_snapshots").fetchone()[0]
            conn.execute("COMMIT")
        finally:
            conn.close()

    def __enter__(self) -> "LockHolder":
        self.thread.start()
        assert self.locked.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(10)


def test_save_waits_for_a_short_lock_and_succeeds(build_service, sqlite_file):
    service = build_service(f"sqlite:///{sqlite_file}")
    with LockHolder(sqlite_file) as holder:
        threading.Timer(1.0, holder.release.set).start()  # the other program commits after ~1 s
        turn = chat(service, "c1", "patience")
    assert turn.outcome == "answered", turn.error
    assert holder.snapshots_seen == 0  # our save really came after the lock was released
    assert len(service.snapshots("c1", turn.app_id)) == 3


def test_lock_held_past_the_timeout_fails_clearly_then_recovers(build_service, sqlite_file):
    url = f"sqlite:///{sqlite_file}?timeout=0.3"
    service = build_service(url)
    assert chat(service, "c1", "first").outcome == "answered"
    before = stored_rows(f"sqlite:///{sqlite_file}")
    with LockHolder(sqlite_file) as holder:
        threading.Timer(5.0, holder.release.set).start()  # a save still waiting by then waited too long
        turn = chat(service, "c1", "blocked")
        assert turn.outcome == "failed"
        assert_clear(turn.error, "database is locked", "timeout")
    assert stored_rows(f"sqlite:///{sqlite_file}") == before  # nothing half-written
    assert chat(service, "c1", "free again").outcome == "answered"
    assert [m["content"] for m in service.open("c1").messages] == [
        "first", "Echo: first", "free again", "Echo: free again"]


@pytest.mark.timeout(60)  # a wrong "another server is busy" guess would wait 2 x 60 s here
@pytest.mark.parametrize("then", ["retry", "send"])
def test_lock_taken_while_the_reply_streams(build_service, llm_server, sqlite_file, then):
    """The reply cannot be saved: the user's message stays, no partial reply, and the chat goes on."""
    service = build_service(f"sqlite:///{sqlite_file}?timeout=0.3", BURROW_REQUEST_TIMEOUT="60")
    llm_server.reply, llm_server.chunk_delay = "one two three four five six", 0.05
    turn, holder = service.send(service.new_conversation_id(), "stream please"), LockHolder(sqlite_file)
    pk = turn.partition_key
    for piece in turn:
        if piece == "one":
            holder.__enter__()  # another program locks the file while the reply streams
    holder.__exit__()
    assert turn.outcome == "failed" and turn.reply == "one two three four five six"
    assert_clear(turn.error, "database is locked")
    view = service.open(pk)
    assert view.messages == [{"role": "user", "content": "stream please"}]  # no half-saved reply
    assert view.pending_step == "ai_response"
    llm_server.chunk_delay = 0
    follow = service.retry(pk, view.app_id) if then == "retry" else service.send(pk, "still there?")
    list(follow)
    assert follow.outcome == "answered" and follow.notice is None, follow.error
    contents = [m["content"] for m in service.open(pk).messages]
    expected = {"retry": ["stream please", "one two three four five six"],
                "send": ["stream please", "still there?", "one two three four five six"]}
    assert contents == expected[then]


# ---- PostgreSQL: down at start, down mid-session -----------------------------------------------
@pytest.mark.postgres
def test_postgres_down_at_start(llm_server):
    url = f"postgresql+psycopg://burrow:{PG_PASSWORD}@127.0.0.1:{free_port()}/burrow"
    with pytest.raises(StorageError) as caught:
        ChatService.from_settings(service_settings(url, llm_server.base_url))
    assert_clear(caught.value, "127.0.0.1", "Connection refused", "database server is running")
    assert "***" in str(caught.value) or "burrow:" not in str(caught.value)


@pytest.mark.postgres
def test_postgres_going_down_mid_session_and_coming_back(build_service, restartable_pg):
    server, url = restartable_pg
    service = build_service(url)
    pk = service.new_conversation_id()
    assert chat(service, pk, "before the outage").outcome == "answered"
    server.stop()
    turn = chat(service, pk, "during the outage")
    assert turn.outcome == "failed"
    assert_clear(turn.error, "not available")
    with pytest.raises(StorageError) as caught:
        service.open(pk)
    assert_clear(caught.value, "not available")
    with pytest.raises(StorageError):
        service.conversations()
    start_and_wait(server)
    assert stored_rows(url)["burrow_snapshots"] == 3  # nothing half-written
    turn = chat(service, pk, "after the outage")  # the same object: the pool reconnects
    assert turn.outcome == "answered", turn.error
    assert [m["content"] for m in service.open(pk).messages] == [
        "before the outage", "Echo: before the outage", "after the outage", "Echo: after the outage"]
    assert len(service.branches(pk)) == 1


@pytest.mark.postgres
@pytest.mark.timeout(60)
def test_postgres_going_down_while_the_reply_streams(build_service, llm_server, restartable_pg):
    server, url = restartable_pg
    service = build_service(url, BURROW_REQUEST_TIMEOUT="60")
    llm_server.reply, llm_server.chunk_delay = "one two three four", 0.05
    turn = service.send(service.new_conversation_id(), "stream please")
    for piece in turn:
        if piece == "one":
            server.stop()
    assert turn.outcome == "failed"
    assert_clear(turn.error, "not available")
    start_and_wait(server)
    llm_server.chunk_delay = 0
    view = service.open(turn.partition_key)
    assert view.messages == [{"role": "user", "content": "stream please"}] and view.pending_step == "ai_response"
    follow = service.send(turn.partition_key, "are you back?")
    list(follow)
    assert follow.outcome == "answered" and follow.notice is None, follow.error
    assert [m["content"] for m in service.open(turn.partition_key).messages] == [
        "stream please", "are you back?", "one two three four"]


@pytest.mark.postgres
def test_a_user_without_access_is_told_the_database_refused_not_that_it_is_down(pg_url):
    """A server that answers but refuses (a role with no grant on Burrow's tables) is not "not available"."""
    owner = SQLAlchemyPersister.from_url(pg_url)
    owner.initialize()
    with owner.engine.begin() as conn:
        conn.execute(text("CREATE ROLE burrow_no_grants LOGIN"))
    limited = make_url(pg_url).set(username="burrow_no_grants")
    store = SQLAlchemyPersister.from_url(limited.render_as_string(hide_password=False))
    try:
        with pytest.raises(StorageError) as caught:
            store.list_app_ids("c1")
        assert_clear(caught.value, "refused a request", "permission denied", "grant the database user")
        assert "is not available" not in str(caught.value)
    finally:
        store.engine.dispose()
        with owner.engine.begin() as conn:
            conn.execute(text("DROP ROLE burrow_no_grants"))
        owner.engine.dispose()
