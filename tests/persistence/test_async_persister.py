"""`AsyncSQLAlchemyPersister`: Burr's contract on both persisters, databases written by one and read by
the other, an async Burr application, and the engine settings on SQLAlchemy's asyncio engine."""
from __future__ import annotations

import asyncio
import inspect
import subprocess
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from burr.core import ApplicationBuilder, State, action, default
from burr.core.action import streaming_action
from burr.integrations.serde.pickle import register_type_to_pickle
from sqlalchemy import event, text

from core.errors import SnapshotConflictError, StorageError
from core.storage import AsyncSQLAlchemyPersister, ConversationStore, SQLAlchemyPersister
from core.storage.engine import async_url
from tests.support.loops import LoopThread, run_async

BIG = "long text " * 200  # stored in a row of its own


def user(text_: str) -> dict:
    return {"role": "user", "content": text_}


def turn_state(history: list, **extra) -> State:
    return State({"chat_history": list(history), **extra})


class Pickled:
    """A value only Burr's pickle serde can store."""

    def __init__(self, name: str, tags: set[str]):
        self.name, self.tags = name, tags

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pickled) and (self.name, self.tags) == (other.name, other.tags)


register_type_to_pickle(Pickled)


class OnOneLoop:
    """The async persister behind plain method calls, on one event loop per test, so one test body
    checks both persisters."""

    def __init__(self, persister: AsyncSQLAlchemyPersister):
        self.persister, self.runner = persister, LoopThread()

    def __getattr__(self, name: str):
        attribute = getattr(self.persister, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        return lambda *args, **kwargs: self.runner.run(attribute(*args, **kwargs))

    def close(self) -> None:
        self.runner.run(self.persister.cleanup())
        self.runner.close()


@pytest.fixture
def open_persister(db_url):
    """Opens a persister of the kind asked for on the test's database (each one another process's view)."""
    opened: list = []

    def open_(kind: str, initialize: bool = True):
        if kind == "sync":
            persister = SQLAlchemyPersister.from_url(db_url)
        else:
            persister = OnOneLoop(AsyncSQLAlchemyPersister.from_url(str(async_url(db_url))))
        if initialize:
            persister.initialize()
        opened.append(persister)
        return persister

    yield open_
    for persister in opened:
        persister.close() if isinstance(persister, OnOneLoop) else persister.engine.dispose()


@pytest.fixture(params=["sync", "async"])
def persister(request, open_persister):
    return open_persister(request.param)


# ---- Burr's contract, on both classes ----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_is_initialized_follows_initialize(open_persister, kind):
    persister = open_persister(kind, initialize=False)
    assert persister.is_initialized() is False
    persister.initialize()
    assert persister.is_initialized() is True
    assert open_persister(kind, initialize=False).is_initialized() is True  # a new process sees it too


def test_save_then_load_latest_and_each_step(persister):
    history = []
    for seq in range(4):
        history.append(user(f"m{seq}"))
        persister.save("c", "a", seq, f"p{seq}", turn_state(history, big=BIG + str(seq), n=seq), "completed")
    latest = persister.load("c", "a")
    assert (latest["partition_key"], latest["app_id"], latest["sequence_id"], latest["position"]) == ("c", "a", 3, "p3")
    assert latest["status"] == "completed" and latest["state"]["n"] == 3
    for seq in range(4):
        loaded = persister.load("c", "a", seq)
        assert loaded["sequence_id"] == seq and loaded["state"]["big"] == BIG + str(seq)
        assert loaded["state"]["chat_history"] == [user(f"m{i}") for i in range(seq + 1)]
    assert persister.load("c", None)["sequence_id"] == 3


def test_list_app_ids_most_recently_written_first(persister):
    for app_id in ("A", "B", "C"):
        persister.save("c", app_id, 0, "human_input", turn_state([]), "completed")
    assert persister.list_app_ids("c") == ["C", "B", "A"]
    persister.save("c", "A", 1, "human_input", turn_state([user("again")]), "completed")
    assert persister.list_app_ids("c") == ["A", "C", "B"]
    assert persister.load("c", None)["app_id"] == "A"
    assert persister.list_app_ids("nobody") == []


def test_unknown_ids_load_none(persister):
    persister.save("c", "a", 0, "human_input", turn_state([user("hi")]), "completed")
    assert persister.load("c", "a", 1) is None
    assert persister.load("c", "other-app") is None
    assert persister.load("other-conversation", None) is None
    assert persister.load("other-conversation", "a", 0) is None


def test_saving_a_step_twice_raises_and_keeps_the_first(persister):
    persister.save("c", "a", 0, "human_input", turn_state([user("first")], big=BIG), "completed")
    with pytest.raises(SnapshotConflictError, match="already saved"):
        persister.save("c", "a", 0, "human_input", turn_state([user("impostor")]), "completed")
    assert persister.load("c", "a")["state"].get_all() == {"chat_history": [user("first")], "big": BIG}
    persister.save("c", "a", 1, "human_input", turn_state([user("first"), user("second")], big=BIG), "completed")
    assert persister.load("c", "a")["state"]["chat_history"][-1] == user("second")


def test_values_stored_with_burrs_pickle_serde(persister):
    """Burr's pickle serde makes bytes (Burr's own SQLitePersister cannot store them); ours round-trip."""
    value = Pickled("beaver", {"dams", "wood"})
    persister.save("c", "a", 0, "human_input", turn_state([], thing=value, things=[value, Pickled("x", set())]), "completed")
    persister.save("c", "a", 1, "human_input", turn_state([user("hi")], thing=value, things=[value]), "completed")
    assert persister.load("c", "a", 0)["state"]["things"] == [value, Pickled("x", set())]
    loaded = persister.load("c", "a")["state"]
    assert loaded["thing"] == value and loaded["things"] == [value] and loaded["chat_history"] == [user("hi")]


def test_partition_key_none(persister):
    persister.save(None, "a", 0, "human_input", turn_state([user("no partition")]), "completed")
    assert persister.load(None, None)["state"]["chat_history"] == [user("no partition")]
    assert persister.list_app_ids(None) == ["a"]


# ---- one database, both persisters ------------------------------------------------------------------
@pytest.mark.parametrize("writer, reader", [("sync", "async"), ("async", "sync")])
def test_what_one_persister_writes_the_other_reads_and_continues(open_persister, writer, reader):
    first, second = open_persister(writer), open_persister(reader)
    history = []
    for seq in range(5):
        history.append(user(f"{writer} {seq} " + "x" * 300))
        first.save("c", "main", seq, "human_input", turn_state(history, big=BIG, n=seq, thing=Pickled("p", {str(seq)})),
                   "completed")
    first.save("c", "fork", 0, "human_input", turn_state(history[:2]), "completed", forked_from=("main", 1))
    for seq in range(5):
        assert second.load_serialized("c", "main", seq) == first.load_serialized("c", "main", seq)
        assert second.load("c", "main", seq)["state"]["thing"] == Pickled("p", {str(seq)})
    assert second.list_app_ids("c") == ["fork", "main"]
    history.append(user(f"{reader} continues"))  # the reader's save finds the previous state in the database
    second.save("c", "main", 5, "human_input", turn_state(history, big=BIG, n=None), "completed")
    assert first.load("c", "main")["state"].get_all() == {"chat_history": history, "big": BIG, "n": None}
    with pytest.raises(SnapshotConflictError):
        first.save("c", "main", 5, "human_input", turn_state([]), "completed")


# ---- an async Burr application -----------------------------------------------------------------------
@action(reads=["chat_history"], writes=["chat_history", "prompt"])
async def ask(state: State, prompt: str) -> State:
    await asyncio.sleep(0)
    return state.update(prompt=prompt, chat_history=[*state["chat_history"], user(prompt)])


@streaming_action(reads=["chat_history", "prompt"], writes=["chat_history", "turns"])
async def answer(state: State) -> AsyncGenerator[tuple[dict, State | None], None]:
    words = ["echo:", *state["prompt"].split()]
    for word in words:
        await asyncio.sleep(0)
        yield {"delta": word}, None
    reply = {"role": "assistant", "content": " ".join(words)}
    yield {"delta": ""}, state.update(chat_history=[*state["chat_history"], reply], turns=state.get("turns", 0) + 1)


async def build_async_app(persister: AsyncSQLAlchemyPersister, app_id: str = "main"):
    return await (
        ApplicationBuilder()
        .with_actions(ask=ask, answer=answer)
        .with_transitions(("ask", "answer", default), ("answer", "ask", default))
        .initialize_from(persister, resume_at_next_action=True, default_state={"chat_history": []},
                         default_entrypoint="ask")
        .with_state_persister(persister)
        .with_identifiers(app_id=app_id, partition_key="chat")
        .abuild()
    )


async def run_turns(url: str, turns: range) -> None:
    """Each turn rebuilds the application from the database, as a web server does per request."""
    async with AsyncSQLAlchemyPersister.from_url(url) as persister:
        await persister.initialize()
        for turn in turns:
            app = await build_async_app(persister)
            await app.astep(inputs={"prompt": f"question {turn}"})
            _, streamed = await app.astream_result(halt_after=["answer"])
            assert [item["delta"] async for item in streamed][:2] == ["echo:", "question"]
            await streamed.get()


def test_an_async_burr_app_on_the_async_persister_reloads_with_the_sync_one(db_url):
    url = str(async_url(db_url))
    run_async(run_turns(url, range(3)))
    run_async(run_turns(url, range(3, 5)))  # another event loop, another engine: a restarted server
    expected = []
    for turn in range(5):
        expected += [user(f"question {turn}"), {"role": "assistant", "content": f"echo: question {turn}"}]
    sync = SQLAlchemyPersister.from_url(db_url)
    try:
        loaded = sync.load("chat", "main")
        assert (loaded["sequence_id"], loaded["position"], loaded["state"]["turns"]) == (9, "answer", 5)
        assert loaded["state"]["chat_history"] == expected
        assert sync.load("chat", "main", 2)["state"]["chat_history"] == expected[:3]
        assert ConversationStore(sync).get("chat").message_count == 10
    finally:
        sync.engine.dispose()


# ---- the engine settings, on the asyncio engine --------------------------------------------------------
def test_async_url_gives_a_bare_url_an_asyncio_driver():
    assert str(async_url("sqlite:////tmp/b.db")) == "sqlite+aiosqlite:////tmp/b.db"
    assert str(async_url("sqlite+pysqlite://")) == "sqlite+aiosqlite://"
    assert async_url("postgresql://u:pw@h/db").drivername == "postgresql+psycopg"
    assert async_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert async_url("sqlite+aiosqlite:///x.db").drivername == "sqlite+aiosqlite"


def test_sqlite_pragmas_apply_to_aiosqlite_connections(sqlite_url):
    async def pragmas() -> dict:
        async with AsyncSQLAlchemyPersister.from_url(sqlite_url) as persister:
            return await persister.database.read(lambda conn: {
                name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")})

    assert run_async(pragmas()) == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 15000}


async def save_concurrently(persister: AsyncSQLAlchemyPersister, conversations: int, saves: int) -> None:
    async def conversation(index: int) -> None:
        history = []
        for seq in range(saves):
            history.append(user(f"c{index}-{seq}"))
            await persister.save(f"conv-{index}", "main", seq, "human_input", turn_state(history, n=seq), "completed")
            assert (await persister.load(f"conv-{index}", None))["sequence_id"] == seq

    await asyncio.gather(*(conversation(i) for i in range(conversations)))


def test_concurrent_saves_on_one_event_loop_all_land(db_url):
    """Writers take SQLite's lock up front (BEGIN IMMEDIATE): interleaved coroutines queue, none fails."""
    async def run() -> None:
        async with AsyncSQLAlchemyPersister.from_url(str(async_url(db_url)), pool_size=8) as persister:
            await persister.initialize()
            await save_concurrently(persister, conversations=8, saves=12)

    run_async(run())
    sync = SQLAlchemyPersister.from_url(db_url)
    try:
        assert ConversationStore(sync).count() == 8
        for index in range(8):
            assert sync.load(f"conv-{index}", None)["state"]["chat_history"] == [user(f"c{index}-{s}") for s in range(12)]
    finally:
        sync.engine.dispose()


@pytest.mark.parametrize("url", ["sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:", "sqlite://"])
def test_async_in_memory_sqlite_is_one_database_for_every_coroutine(url):
    async def run() -> None:
        async with AsyncSQLAlchemyPersister.from_url(url) as persister:
            await persister.initialize()
            persister._schema_ready = False  # ask the database, through the shared connection
            assert await persister.is_initialized() is True
            await save_concurrently(persister, conversations=6, saves=10)
            assert sorted(await persister.list_app_ids("conv-3")) == ["main"]
            assert (await persister.load("conv-5", None))["state"]["n"] == 9

    run_async(run())


def test_psycopg_binary_results_apply_to_the_async_engine(pg_url):
    """List chunks and values arrive in psycopg's binary format (bytea as is, not hex text)."""
    formats: list[int] = []

    async def run() -> None:
        async with AsyncSQLAlchemyPersister.from_url(pg_url) as persister:
            @event.listens_for(persister.engine.sync_engine, "after_cursor_execute")
            def seen(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
                if context.execution_options.get("burrow_binary_results"):
                    formats.append(cursor._cursor.pgresult.fformat(0))

            await persister.initialize()
            history = [user("x" * 400) for _ in range(30)]
            await persister.save("c", "a", 0, "human_input", turn_state(history, big=BIG), "completed")
            persister.list_cache.clear()
            assert (await persister.load("c", "a"))["state"]["chat_history"] == history

    run_async(run())
    assert formats and set(formats) == {1}  # 1: binary


def test_errors_become_burrows_errors_without_the_password(tmp_path):
    async def open_and_initialize(url: str) -> None:
        try:
            async with AsyncSQLAlchemyPersister.from_url(url) as persister:
                await persister.initialize()
        finally:  # aiosqlite stops a connection that failed to open on its thread, later: not after the loop closed
            await asyncio.sleep(0.2)

    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.raises(StorageError, match="unable to open database file.*folder exists"):
        run_async(open_and_initialize(f"sqlite+aiosqlite:///{blocked}/burrow.db"))
    with pytest.raises(StorageError, match="connect") as caught:
        run_async(open_and_initialize("postgresql+psycopg://burrow:s3cret@127.0.0.1:1/burrow?connect_timeout=2"))
    assert "s3cret" not in str(caught.value) and "127.0.0.1:1/burrow" in str(caught.value)


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Read-only even for root (the tests run as root, which ignores file modes); skips where impossible."""
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not possible here: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_file_fails_clearly_and_recovers_without_a_restart(sqlite_url, tmp_path):
    SQLAlchemyPersister.from_url(sqlite_url).initialize()

    async def run() -> None:
        async with AsyncSQLAlchemyPersister.from_url(sqlite_url) as persister:
            with immutable(tmp_path / "burrow.db"):
                assert await persister.load("c", None) is None  # the pool now holds read-only handles
                with pytest.raises(StorageError, match="readonly.*writable"):
                    await persister.save("c", "a", 0, "human_input", turn_state([user("no")]), "completed")
            await persister.save("c", "a", 0, "human_input", turn_state([user("yes")]), "completed")
            assert (await persister.load("c", "a"))["state"]["chat_history"] == [user("yes")]

    run_async(run())
