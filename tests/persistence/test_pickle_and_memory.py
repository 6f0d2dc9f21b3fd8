"""Persisters that travel (pickled into another process, as Burr does with applications) and
in-memory SQLite (one database shared by every thread of the process that made it)."""
from __future__ import annotations

import asyncio
import multiprocessing
import pickle
import threading
import uuid
from pathlib import Path

import pytest
from burr.core import State

from core.app import build_application
from core.llm import OfflineModel
from core.storage import AsyncSQLAlchemyPersister, ConversationStore, SQLAlchemyPersister
from core.storage.engine import async_url

MEMORY_URLS = ["sqlite://", "sqlite:///:memory:", "sqlite:///file:burrow-{id}?mode=memory&uri=true"]


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def save_turn(persister, pk: str, app_id: str, seq: int, history: list, **extra) -> None:
    persister.save(pk, app_id, seq, "human_input", State({"chat_history": list(history), **extra}), "completed")


# ---- pickling ---------------------------------------------------------------------------------------
def test_pickled_copy_reconnects_with_fresh_memory_and_the_same_settings(db_url):
    original = SQLAlchemyPersister.from_url(db_url, list_cache_bytes=12345, pool_size=3)
    original._cache_size = 7
    original.initialize()
    save_turn(original, "c", "a", 0, [user("before pickling")], big="x" * 5000)
    assert original.load("c", "a") is not None and original.list_cache.size > 0

    copy = pickle.loads(pickle.dumps(original))
    try:
        assert copy.engine is not original.engine and copy._lock is not original._lock
        assert copy.list_cache.size == 0 and len(copy._last) == 0  # caches start empty
        assert (copy.list_cache.max_bytes, copy._cache_size, copy.engine.pool.size()) == (12345, 7, 3)
        assert copy._schema_ready is True  # known current: no question asked on the next build
        assert copy.load("c", "a")["state"]["chat_history"] == [user("before pickling")]
        save_turn(copy, "c", "a", 1, [user("before pickling"), user("from the copy")], big="x" * 5000)
        assert original.load("c", "a")["state"]["chat_history"][-1] == user("from the copy")
    finally:
        copy.engine.dispose()
        original.engine.dispose()


def test_pickle_keeps_the_password_and_the_callers_options_untouched():
    """The copy must log in again, so the password travels (the URL shown in messages still hides it)."""
    connect_args = {"connect_timeout": 2}
    persister = SQLAlchemyPersister.from_url("postgresql+psycopg://burrow:s3cret@127.0.0.1:1/db",
                                             connect_args=connect_args)
    copy = pickle.loads(pickle.dumps(persister))
    assert copy.engine.url.password == "s3cret" and "s3cret" not in copy.url
    assert copy._engine_kwargs == {"connect_args": {"connect_timeout": 2}} and connect_args == {"connect_timeout": 2}
    assert copy._schema_ready is False


@pytest.mark.parametrize("url", MEMORY_URLS)
@pytest.mark.parametrize("cls", [SQLAlchemyPersister, AsyncSQLAlchemyPersister])
def test_in_memory_sqlite_refuses_to_be_pickled(url, cls):
    persister = cls.from_url(url.format(id=uuid.uuid4().hex) if cls is SQLAlchemyPersister else str(async_url(url)))
    with pytest.raises(TypeError, match="in-memory SQLite"):
        pickle.dumps(persister)


def _child(persister, kind: str, results) -> None:
    """Runs in a spawned process with a persister that arrived pickled: reads the parent's step, adds one."""
    try:
        if kind == "async":
            asyncio.run(_child_async(persister, results))
        else:
            results.put(("fresh cache", persister.list_cache.size))
            results.put(("loaded", persister.load("c", "a")["state"]["chat_history"]))
            save_turn(persister, "c", "a", 1, [user("parent"), user("child")], n=1)
            persister.engine.dispose()
        results.put(("done", None))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", repr(exc)))


async def _child_async(persister, results) -> None:
    results.put(("fresh cache", persister.list_cache.size))
    results.put(("loaded", (await persister.load("c", "a"))["state"]["chat_history"]))
    await persister.save("c", "a", 1, "human_input", State({"chat_history": [user("parent"), user("child")], "n": 1}),
                         "completed")
    await persister.cleanup()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_pickled_persister_works_in_a_spawned_process(db_url, kind):
    parent = SQLAlchemyPersister.from_url(db_url)
    parent.initialize()
    save_turn(parent, "c", "a", 0, [user("parent")], n=0)
    parent.load("c", "a")
    sent = parent if kind == "sync" else AsyncSQLAlchemyPersister.from_url(str(async_url(db_url)))
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_child, args=(sent, kind, results))  # spawn pickles the arguments
    proc.start()
    proc.join(timeout=120)
    reported = dict(results.get(timeout=5) for _ in range(3))
    try:
        assert proc.exitcode == 0 and "error" not in reported, reported
        assert reported == {"fresh cache": 0, "loaded": [user("parent")], "done": None}
        loaded = parent.load("c", "a")
        assert (loaded["sequence_id"], loaded["state"]["n"]) == (1, 1)
        assert loaded["state"]["chat_history"] == [user("parent"), user("child")]
    finally:
        parent.engine.dispose()


# ---- in-memory SQLite ---------------------------------------------------------------------------------
@pytest.fixture(params=MEMORY_URLS, ids=["sqlite://", ":memory:", "mode=memory"])
def memory_persister(request, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a URI that were not taken as in-memory would leave a file here
    persister = SQLAlchemyPersister.from_url(request.param.format(id=uuid.uuid4().hex))
    yield persister
    persister.engine.dispose()
    assert list(tmp_path.iterdir()) == []


def _in_threads(count: int, work) -> list[BaseException]:
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_in_memory_database_is_one_database_for_every_thread(memory_persister):
    memory_persister.initialize()
    memory_persister._schema_ready = False  # so the other thread really asks the database
    other_thread: list = []
    _in_threads(1, lambda _: other_thread.append((memory_persister.is_initialized(), memory_persister.schema_tables())))
    assert other_thread and other_thread[0][0] is True and "burrow_conversations" in other_thread[0][1]
    saves = 25

    def writer(index: int) -> None:
        history = []
        for seq in range(saves):
            history.append(user(f"t{index}-{seq}"))
            save_turn(memory_persister, f"conv-{index}", "main", seq, history, n=seq)
            assert memory_persister.load(f"conv-{index}", None)["sequence_id"] == seq
            memory_persister.list_app_ids(f"conv-{(index + 1) % 6}")

    assert _in_threads(6, writer) == []
    assert ConversationStore(memory_persister).count() == 6
    for index in range(6):
        loaded = memory_persister.load(f"conv-{index}", None)
        assert loaded["state"]["chat_history"] == [user(f"t{index}-{s}") for s in range(saves)]


def test_a_burr_app_on_in_memory_sqlite_runs_several_turns(memory_persister):
    memory_persister.initialize()
    model = OfflineModel(word_delay=0)
    app = build_application("chat", persister=memory_persister, llm=model)
    for turn in range(3):
        for _ in range(3):  # human_input, safety_check, ai_response
            app.step(inputs={"prompt": f"question {turn}"})
    resumed: list = []  # another thread rebuilds the conversation from the database, as the next page run does
    errors = _in_threads(1, lambda _: resumed.append(build_application("chat", persister=memory_persister, llm=model)))
    assert errors == []
    history = resumed[0].state["chat_history"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 3
    assert [m["content"] for m in history[::2]] == [f"question {t}" for t in range(3)]
    assert resumed[0].sequence_id == 8
