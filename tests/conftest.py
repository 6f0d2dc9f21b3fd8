"""Fixtures shared by every test layer: the fake OpenAI server, databases, a clean environment.

PostgreSQL is a real server started once per session by pytest-postgresql (through our pg_ctl
shim, so it also works as root); each test gets its own empty database. Without PostgreSQL
binaries, postgres tests are skipped locally but fail when the CI variable is set, so CI can
never pass by silently skipping them.
"""
from __future__ import annotations

import functools
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy.engine import URL

from tests.support.fake_openai import FakeOpenAI

PG_SHIM = Path(__file__).resolve().parent / "support" / "pg_ctl_nonroot.sh"
PG_BINARIES_MISSING = 69  # the shim's exit status when there is no pg_ctl at all
PG_FIXTURES = frozenset({"pg_url", "postgresql_proc", "postgresql"})
DEVELOPER_ENV_PREFIXES = ("OPENAI_", "BURROW_")


# ---- PostgreSQL availability ------------------------------------------------------------------
def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@functools.cache
def postgres_problem() -> tuple[bool, str] | None:
    """None if the shim can run pg_ctl; else (binaries are missing, what went wrong). Asked once."""
    try:
        result = subprocess.run([str(PG_SHIM), "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot run {PG_SHIM}: {exc}"
    if result.returncode == 0:
        return None
    detail = result.stderr.strip() or f"{PG_SHIM} --version exited with {result.returncode}"
    return result.returncode == PG_BINARIES_MISSING, detail


def require_postgres() -> None:
    """Skips when PostgreSQL is not installed (fails on CI); fails when it is installed but broken."""
    problem = postgres_problem()
    if problem is None:
        return
    missing, detail = problem
    if missing and not on_ci():
        pytest.skip(f"no PostgreSQL server binaries, postgres tests skipped: {detail}")
    why = "CI is set, so missing PostgreSQL is a failure, not a skip" if missing else "PostgreSQL is broken"
    pytest.fail(f"{why}: {detail}", pytrace=False)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests using a PostgreSQL fixture get the `postgres` marker, so `-m "not postgres"` works for them too."""
    for item in items:
        if PG_FIXTURES.intersection(getattr(item, "fixturenames", ())) and not item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres"):
        require_postgres()


# ---- databases ----------------------------------------------------------------------------------
# One server per session on a free port; port=None: never the fixed default 5432 a developer may use.
postgresql_proc = factories.postgresql_proc(executable=str(PG_SHIM), host="127.0.0.1", port=None)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for this test: `postgresql+psycopg://user@host:port/dbname`.

    Dropped afterwards, with any connections the test left open, so tests cannot see each other's rows.
    """
    require_postgres()  # also when reached through getfixturevalue from an unmarked test
    server: PostgreSQLExecutor = request.getfixturevalue("postgresql_proc")
    dbname = f"burrow_test_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(user=server.user, host=server.host, port=server.port, dbname=dbname,
                              template_dbname=server.template_dbname,
                              maintenance_dbname=server.maintenance_dbname, password=server.password)
    url = URL.create("postgresql+psycopg", username=server.user, password=server.password or None,
                     host=server.host, port=int(server.port), database=dbname)
    with janitor:
        yield url.render_as_string(hide_password=False)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A real SQLite file (not :memory:), so reopening it behaves like the app restarting."""
    return f"sqlite:///{tmp_path}/burrow.db"


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on both backends; PostgreSQL is only started when a postgres case runs."""
    return request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")


@pytest.fixture
def tracker_dir(tmp_path: Path) -> Path:
    """An empty, existing folder for Burr's local tracker, so tests never write to ~/.burr."""
    path = tmp_path / "tracker"
    path.mkdir()
    return path


# ---- the model ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    """One fake OpenAI server for the session (also used by the e2e streamlit processes)."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def llm_server(fake_openai: FakeOpenAI) -> Iterator[FakeOpenAI]:
    """The session's fake server, reset before and after the test so no setting or queued error leaks."""
    fake_openai.reset()
    yield fake_openai
    fake_openai.reset()


# ---- environment --------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _no_developer_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Removes OPENAI_* and BURROW_* variables, so a developer's real key or database never reaches a test."""
    for name in list(os.environ):
        if name.startswith(DEVELOPER_ENV_PREFIXES):
            monkeypatch.delenv(name, raising=False)
