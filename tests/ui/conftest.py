"""AppTest fixtures: the real app script on a SQLite file of its own, talking to the fake OpenAI server.

`st.cache_resource` lives as long as the test process, so it is cleared around every test: each
test builds its own `ChatService` from the environment it sets up (and clearing closes it, so no
reply of one test runs on into the next).

`service` is a second service on the same database: to the app it is another server (its runs
are "replying elsewhere"). `persister` writes and reads stored steps directly, to seed and check.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import streamlit as st
from burr.core import State
from streamlit.testing.v1 import AppTest

from core.chat import ChatService
from core.settings import Settings
from core.storage import SQLAlchemyPersister

APP = "../../ui/Home.py"  # AppTest resolves it relative to this folder
TIMEOUT = 30


@pytest.fixture(autouse=True)
def fresh_caches() -> Iterator[None]:
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, llm_server) -> Path:
    """Environment for the app (set before the first run): own database, tracker folder and model server."""
    monkeypatch.setenv("BURROW_DATABASE_URL", f"sqlite:///{tmp_path / 'burrow.db'}")
    monkeypatch.setenv("BURROW_TRACKER_DIR", str(tmp_path / "burr"))
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test")
    return tmp_path


@pytest.fixture
def make_app(app_env: Path) -> Callable[..., AppTest]:
    """A new browser tab: `make_app(c=..., b=...)` opens the app with those URL parameters."""

    def make(**query: str) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=TIMEOUT)
        for name, value in query.items():
            at.query_params[name] = value
        return at

    return make


@pytest.fixture
def app(make_app: Callable[..., AppTest]) -> AppTest:
    return make_app()


@pytest.fixture
def service(app_env: Path) -> Iterator[ChatService]:
    """The same core the app uses, on the same database: another server, as far as the app can tell."""
    svc = ChatService.from_settings(Settings.load())
    yield svc
    svc.close()


@pytest.fixture
def persister(service: ChatService) -> Iterator[SQLAlchemyPersister]:
    """Stored steps, written and read directly (the schema is the service's)."""
    store = SQLAlchemyPersister.from_url(Settings.load().database_url, list_cache_bytes=0)
    yield store
    store.engine.dispose()


@pytest.fixture
def seed(persister: SQLAlchemyPersister) -> Callable[..., str]:
    """Stores a conversation whose first message is `title` (optionally with `steps` snapshots)."""

    def make(title: str, steps: int = 1, status: str = "completed") -> str:
        key = ChatService.new_conversation_id()
        history = [{"role": "user", "content": title}]
        for seq in range(steps):
            state = State({"chat_history": history, "prompt": title, "__SEQUENCE_ID": seq})
            persister.save(key, f"app-{key}", seq, "human_input", state, status)
        return key

    return make
