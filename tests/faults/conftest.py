"""Fixtures for the fault tests: ChatServices built from settings the way the app builds them.

Every service talks to the fake OpenAI server through the real `openai` client, with a key that
looks like a real one, so the tests can also check that it never leaks.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy.engine import URL

from core.chat import ChatService
from core.settings import Settings
from tests.conftest import PG_SHIM, require_postgres
from tests.support.fake_openai import FakeOpenAI

SECRET_KEY = "sk-test-SECRET-b7f3c9d2e1a04f5e8d6c"


def service_settings(db_url: str, base_url: str, **env: str) -> Settings:
    """Settings as the app reads them from the environment: no retries, a short timeout, no tracker."""
    environ = {
        "BURROW_DATABASE_URL": db_url,
        "OPENAI_BASE_URL": base_url,
        "OPENAI_API_KEY": SECRET_KEY,
        "BURROW_MAX_RETRIES": "0",
        "BURROW_REQUEST_TIMEOUT": "2",
        "BURROW_TRACKER_PROJECT": "off",
        **env,
    }
    return Settings.load(environ=environ, secrets={})


@pytest.fixture
def build_service(llm_server: FakeOpenAI) -> Iterator[Callable[..., ChatService]]:
    """Builds ChatServices on a given database, each with its own engine (like separate servers)."""
    made: list[ChatService] = []

    def build(url: str, base_url: str | None = None, **env: str) -> ChatService:
        service = ChatService.from_settings(service_settings(url, base_url or llm_server.base_url, **env))
        made.append(service)
        return service

    yield build
    for service in made:
        service.close()


@pytest.fixture
def make_service(db_url: str, build_service: Callable[..., ChatService]) -> Callable[..., ChatService]:
    """ChatServices on the test's database: each test runs on SQLite and on PostgreSQL."""
    return lambda url=None, **kwargs: build_service(url or db_url, **kwargs)


@pytest.fixture
def service(make_service: Callable[..., ChatService]) -> ChatService:
    return make_service()


# ---- a PostgreSQL server of our own, which the tests may stop and start ------------------------
# The URL carries a password so the tests can check it never shows in a message. The server trusts
# local connections and ignores it (initdb --pwfile cannot read pytest's root-only temp file as `postgres`).
PG_PASSWORD = "pg-SECRET-5a1e9c7f"

# Session-scoped like the shared server, but separate: stopping it cannot disturb other tests.
restartable_postgresql_proc = factories.postgresql_proc(executable=str(PG_SHIM), host="127.0.0.1", port=None)


@pytest.fixture
def restartable_pg(request: pytest.FixtureRequest) -> Iterator[tuple[PostgreSQLExecutor, str]]:
    """(server, URL of a fresh database on it); the server is running again after the test."""
    require_postgres()
    server: PostgreSQLExecutor = request.getfixturevalue("restartable_postgresql_proc")
    ensure_running(server)
    dbname = f"burrow_fault_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(user=server.user, host=server.host, port=server.port, dbname=dbname,
                              template_dbname=server.template_dbname,
                              maintenance_dbname=server.maintenance_dbname)
    url = URL.create("postgresql+psycopg", username=server.user, password=PG_PASSWORD,
                     host=server.host, port=int(server.port), database=dbname)
    with janitor:
        yield server, url.render_as_string(hide_password=False)
        ensure_running(server)


def ensure_running(server: PostgreSQLExecutor) -> None:
    if not server.running():
        start_and_wait(server)


def start_and_wait(server: PostgreSQLExecutor, within: float = 30.0) -> None:
    """Starts the server and waits until it accepts connections: pg_ctl may return while PostgreSQL
    still answers "the database system is starting up"."""
    import time

    import psycopg

    server.start()
    deadline = time.monotonic() + within
    while True:
        try:
            psycopg.connect(host=server.host, port=int(server.port), user=server.user, dbname="postgres",
                            connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)
