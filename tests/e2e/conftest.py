"""End-to-end harness: real `streamlit run ui/Home.py` processes driven by a real headless Chromium.

The browser is the system Chromium (Debian's `chromium`, or $CHROMIUM_PATH) so nothing is downloaded;
on a laptop without one, Playwright's own browser is used. Each server gets its own database and
tracker folder and talks to the tests' fake OpenAI server, so the whole stack is real except the model.
"""
from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect
from pytest_postgresql.executors import PostgreSQLExecutor
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy.engine import URL

from tests.e2e.pages import API_KEY, ARTIFACTS, MODEL_NAME, save_screenshot
from tests.support.net import free_port, log_tail, wait_http_ok

ROOT = Path(__file__).resolve().parents[2]
APP_SCRIPT = "ui/Home.py"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
START_TIMEOUT = 45.0
CHUNK_DELAY = 0.01  # small but non-zero, so replies really arrive in pieces

expect.set_options(timeout=15_000)


# ---- browser ---------------------------------------------------------------------------------
def system_chromium() -> str | None:
    """$CHROMIUM_PATH or Debian's chromium; None means: try Playwright's own browser."""
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium", "/usr/bin/chromium-browser"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict, browser_name: str, playwright) -> dict:
    """Launches the system Chromium; falls back to Playwright's browser, skips (fails on CI) if neither."""
    executable = system_chromium()
    if browser_name == "chromium" and executable and not browser_type_launch_args.get("channel"):
        return {**browser_type_launch_args, "executable_path": executable, "args": CHROMIUM_ARGS}
    bundled = getattr(playwright, browser_name).executable_path
    if not browser_type_launch_args.get("channel") and not Path(bundled).exists():
        reason = ("no browser for the e2e tests: install Debian's `chromium`, set CHROMIUM_PATH, "
                  f"or run `playwright install {browser_name}`")
        if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
            pytest.fail(reason)  # CI must never pass by skipping the browser tests
        pytest.skip(reason)
    return browser_type_launch_args


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    """Screenshots in artifacts/e2e/ are this run's only: stale failure shots would mislead."""
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args: dict) -> dict:
    return {**browser_context_args, "viewport": {"width": 1280, "height": 900}}


# ---- streamlit server ------------------------------------------------------------------------
def _clean_environ() -> dict[str, str]:
    """The test process's environment without any developer OPENAI_*/BURROW_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BURROW_", "STREAMLIT_"))}


class StreamlitServer:
    """One `streamlit run ui/Home.py` process; `restart()` keeps its port, database and tracker folder."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str], script: str = APP_SCRIPT):
        self.name, self.workdir, self.env, self.script = name, workdir, env, script
        self.port = free_port()
        self.log = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> "StreamlitServer":
        """Starts the process without waiting for it (so several servers can boot in parallel)."""
        cmd = [sys.executable, "-m", "streamlit", "run", self.script, "--server.headless", "true",
               "--server.port", str(self.port), "--server.address", "127.0.0.1",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait_healthy(self, timeout: float = START_TIMEOUT) -> "StreamlitServer":
        """Polls /_stcore/health; fails at once with the log if the process died."""
        wait_http_ok(f"{self.url}/_stcore/health", self.proc, self.log, timeout=timeout)
        return self

    def start(self) -> "StreamlitServer":
        return self.spawn().wait_healthy()

    def stop(self) -> None:
        """Ends our own process (by its pid) and waits for it, so the database is released."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> "StreamlitServer":
        """A new process on the same port, database and tracker folder: what a redeploy does."""
        self.stop()
        return self.start()

    def log_tail(self, chars: int = 6000) -> str:
        return log_tail(self.log, chars)


class ServerFactory:
    """Makes servers, each with its own tracker folder and (unless given a URL) its own SQLite file."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory, model_url: str):
        self.tmp_path_factory, self.model_url = tmp_path_factory, model_url
        self.servers: list[StreamlitServer] = []

    def __call__(self, name: str = "app", database_url: str | None = None, start: bool = True,
                 **extra_env: str) -> StreamlitServer:
        workdir = self.tmp_path_factory.mktemp(f"e2e-{name}")
        env = {
            **_clean_environ(),
            "BURROW_DATABASE_URL": database_url or f"sqlite:///{workdir / 'burrow.db'}",
            "BURROW_TRACKER_DIR": str(workdir / "tracker"),
            "BURROW_MODEL": MODEL_NAME,
            "OPENAI_BASE_URL": self.model_url,
            "OPENAI_API_KEY": API_KEY,
            "PYTHONUNBUFFERED": "1",
            **extra_env,
        }
        server = StreamlitServer(name, workdir, env)
        self.servers.append(server)
        return server.start() if start else server

    def stop_all(self, servers: list[StreamlitServer] | None = None) -> None:
        """Stops servers in parallel (each graceful shutdown takes a couple of seconds)."""
        servers = self.servers if servers is None else servers
        for server in servers:
            if server.proc is not None and server.proc.poll() is None:
                server.proc.terminate()
        for server in servers:
            server.stop()


@pytest.fixture(scope="module")
def streamlit_factory(tmp_path_factory, fake_openai) -> Iterator[ServerFactory]:
    """`streamlit_factory(name, database_url=None, start=True, **env)`; every server is stopped at the end."""
    factory = ServerFactory(tmp_path_factory, fake_openai.base_url)
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def module_pg_url(postgresql_proc: PostgreSQLExecutor) -> Iterator[str]:
    """A fresh PostgreSQL database shared by one module's tests, so its servers boot only once."""
    dbname = f"burrow_e2e_{uuid.uuid4().hex[:12]}"
    janitor = DatabaseJanitor(user=postgresql_proc.user, host=postgresql_proc.host, port=postgresql_proc.port,
                              dbname=dbname, template_dbname=postgresql_proc.template_dbname,
                              maintenance_dbname=postgresql_proc.maintenance_dbname,
                              password=postgresql_proc.password)
    url = URL.create("postgresql+psycopg", username=postgresql_proc.user,
                     password=postgresql_proc.password or None, host=postgresql_proc.host,
                     port=int(postgresql_proc.port), database=dbname)
    with janitor:
        yield url.render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def app_server(streamlit_factory) -> StreamlitServer:
    """One server per test module, shared by its tests (they each start their own conversations)."""
    return streamlit_factory("app")


@pytest.fixture(autouse=True)
def model(llm_server):
    """The fake model, reset for each test (no leftover queued errors); replies stream in small pieces."""
    llm_server.chunk_delay = CHUNK_DELAY
    return llm_server


# ---- failure diagnostics ---------------------------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On a failed test: screenshots of every open tab (before teardown stops any server), server logs."""
    report = yield
    if report.when == "call" and report.failed:
        context = item.funcargs.get("context")
        for index, open_page in enumerate(context.pages if context is not None else []):
            save_screenshot(open_page, f"FAILED-{item.name}-{index}")
        factory = item.funcargs.get("streamlit_factory")
        for server in factory.servers if factory is not None else []:
            report.sections.append((f"streamlit {server.name} log", server.log_tail()))
    return report


@pytest.fixture
def page(context: BrowserContext, streamlit_factory: ServerFactory) -> Page:
    """pytest-playwright's page; asking for the factory here lets a failure report every server's log."""
    return context.new_page()
