"""Logging: every error a user is shown is logged once, with its traceback, and never with a secret.

The real `openai` client talks to the fake server over HTTP and the databases are real SQLite files;
the app's pages run under AppTest. Records are read two ways: pytest's caplog (which sees every
logger) and the output of the handler `configure_logging` installs, as an operator would read it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import openai
import pytest
import streamlit as st
from sqlalchemy import create_engine, text
from streamlit.testing.v1 import AppTest

from core.chat import ChatService, Run
from core.errors import StorageError
from core.llm import LLMError, OpenAIChatModel, translate_error
from core.logs import (HANDLER_NAME, LOGGERS, REDACTED, RedactingFilter, Redactor, burrow_handler,
                       configure_logging, secrets_of)
from core.settings import Settings, SettingsError
from tests.support.fake_openai import FakeOpenAI

KEY = "sk-test-LOGGING-4e8a1f2c9b7d6e5a3c1f"
FRAGMENTS = (KEY, KEY[8:], KEY[-12:])  # the whole key, and pieces that would survive a cut
APP = "../../ui/Home.py"  # AppTest resolves it relative to this file


def leaks(text: str) -> list[str]:
    return [fragment for fragment in FRAGMENTS if fragment in text]


def settings_for(db_url: str, base_url: str, **env: str) -> Settings:
    environ = {"BURROW_DATABASE_URL": db_url, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": KEY,
               "BURROW_MAX_RETRIES": "0", "BURROW_REQUEST_TIMEOUT": "2", "BURROW_TRACKER_PROJECT": "off",
               "BURROW_LOG_LEVEL": "DEBUG", **env}
    return Settings.load(environ=environ, secrets={})


BARE_MODE = "streamlit.runtime.scriptrunner_utils"  # Streamlit's "missing ScriptRunContext" note when tests touch st.*


def warnings_and_up(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records
            if record.levelno >= logging.WARNING and not record.name.startswith(BARE_MODE)]


def shown(record: logging.LogRecord) -> str:
    """The record as Burrow's handler prints it: message and traceback."""
    handler = burrow_handler()
    assert handler is not None
    return handler.format(record)


def run(service: ChatService, text: str, key: str = "c1") -> Run:
    turn = service.send(key, text)
    list(turn)
    return turn


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide loggers (and the pages call it): undo that after each test."""
    loggers = [logging.getLogger(name) for name in (*LOGGERS, "burr.core.application")]
    saved = [(logger, logger.level, list(logger.handlers), list(logger.filters)) for logger in loggers]
    for logger in loggers[:len(LOGGERS)]:  # start without a handler an earlier test left behind
        logger.handlers[:] = [h for h in logger.handlers if h.get_name() != HANDLER_NAME]
    yield
    for logger, level, handlers, filters in saved:
        logger.setLevel(level)
        logger.handlers[:], logger.filters[:] = handlers, filters


@pytest.fixture
def make_service(llm_server: FakeOpenAI, sqlite_url: str) -> Iterator[Callable[..., ChatService]]:
    """Services built the way the app builds them: logging configured from the settings first."""
    made: list[ChatService] = []

    def make(url: str | None = None, **env: str) -> ChatService:
        settings = settings_for(url or sqlite_url, llm_server.base_url, **env)
        configure_logging(settings)
        made.append(ChatService.from_settings(settings))
        return made[-1]

    yield make
    for service in made:
        service.persister.engine.dispose()


# ---- each error is logged once, where it becomes a message ------------------------------------
@pytest.mark.parametrize("status, kind", [(500, "server"), (429, "rate_limit")])
def test_a_model_error_is_logged_once_with_its_traceback(make_service, llm_server, caplog, status, kind):
    service = make_service()
    llm_server.fail_next(status)
    turn = run(service, "hello")
    assert turn.outcome == "failed" and isinstance(turn.error, LLMError) and turn.error.kind == kind
    [record] = warnings_and_up(caplog)
    assert (record.name, record.levelno) == ("core.turn", logging.WARNING)
    assert record.exc_info and record.exc_info[1] is turn.error
    assert isinstance(turn.error.__cause__, openai.APIStatusError)  # the SDK's error, chained under it
    printed = shown(record)
    assert str(turn.error) in printed and "Traceback" in printed and "APIStatusError" not in str(turn.error)


def test_a_moderation_error_is_logged_once_and_burr_does_not_dump_the_conversation(make_service, llm_server, caplog):
    service = make_service(BURROW_USE_MODERATION="true")
    llm_server.fail_next(500)  # the moderation call, made inside Burr's safety_check step
    turn = run(service, "my private words")
    assert turn.outcome == "failed" and isinstance(turn.error, LLMError)
    [record] = warnings_and_up(caplog)
    assert record.name == "core.turn" and record.exc_info[1] is turn.error
    assert not [r.name for r in caplog.records if "my private words" in r.getMessage()]


def test_an_unavailable_database_is_logged_once(make_service, sqlite_url, caplog):
    writer = make_service()
    assert run(writer, "before").outcome == "answered"
    reader = make_service(f"sqlite:///file:{sqlite_url.removeprefix('sqlite:///')}?mode=ro&uri=true")
    caplog.clear()
    turn = run(reader, "while read-only")
    assert turn.outcome == "failed" and isinstance(turn.error, StorageError)
    [record] = warnings_and_up(caplog)
    assert (record.name, record.levelno) == ("core.turn", logging.ERROR)
    assert record.exc_info[1] is turn.error and "Traceback" in shown(record)


# ---- a key the server sends back ----------------------------------------------------------------
@pytest.mark.parametrize("status", [400, 500])
def test_a_key_the_server_echoes_back_is_in_no_log_line_and_not_in_the_message(
        make_service, llm_server, caplog, capsys, status):
    service = make_service()
    llm_server.fail_next(status, echo_authorization=True)
    turn = run(service, "hello")
    assert turn.outcome == "failed"
    assert KEY in str(turn.error.__cause__)  # the server really quoted the key: the checks below can fail
    assert not leaks(str(turn.error)) and not leaks(repr(turn.error))
    [record] = warnings_and_up(caplog)
    assert record.exc_info
    for each in caplog.records:
        assert not leaks(shown(each)) and not leaks(caplog.handler.format(each)), each.name
    printed = capsys.readouterr().err  # what Burrow's handler wrote to stderr
    assert "Turn on conversation c1" in printed and REDACTED in printed and "Traceback" in printed
    assert not leaks(printed)


def test_a_configured_key_is_redacted_from_the_users_message_whatever_its_shape():
    """A local server's key need not look like sk-...: the model's own redactor knows the configured one."""
    model = OpenAIChatModel(Settings.load({"OPENAI_API_KEY": "local-TOKEN-7f3e9a1c", "OPENAI_BASE_URL": "http://x/v1"}))
    response = httpx2.Response(400, request=httpx2.Request("POST", "http://x/v1/chat/completions"))
    error = openai.BadRequestError("unknown key local-TOKEN-7f3e9a1c", response=response, body=None)
    assert "local-TOKEN" in str(translate_error(error))  # not token-shaped: the patterns alone miss it
    assert "local-TOKEN" not in str(translate_error(error, model._redact))


# ---- the redacting filter -----------------------------------------------------------------------
def test_redactor_removes_configured_secrets_and_token_shapes():
    settings = Settings.load({"OPENAI_API_KEY": "plain-KEY-1234",
                              "BURROW_DATABASE_URL": "postgresql+psycopg://burrow:pa%40ss-SECRET@db/burrow"})
    redact = Redactor(secrets_of(settings))
    text = ("key plain-KEY-1234, password pa@ss-SECRET in pa%40ss-SECRET, Authorization: Bearer abc.DEF-123, "
            "sk-proj-abcdefghijkl, mysql://root:hunter2x@host/db")
    cleaned = redact(text)
    for secret in ("plain-KEY-1234", "pa@ss-SECRET", "pa%40ss", "abc.DEF-123", "sk-proj", "hunter2x"):
        assert secret not in cleaned, (secret, cleaned)
    assert "mysql://root:[redacted]@host/db" in cleaned
    assert redact("http://host:8080/x@y and a 3-char key abc") == "http://host:8080/x@y and a 3-char key abc"
    assert Redactor(["abc"]).secrets == ()  # too short to redact without mangling every line


def test_filter_redacts_the_formatted_message_and_traceback():
    secret = "plain-KEY-1234"
    try:
        try:
            raise ValueError(f"server said: {secret}")
        except ValueError as inner:
            raise LLMError("server", "The model server failed (500).") from inner
    except LLMError as exc:
        record = logging.LogRecord("core.chat", logging.WARNING, __file__, 1, "failed with %s and %r",
                                   (secret, {"auth": f"Bearer {secret}"}), (type(exc), exc, exc.__traceback__))
    assert RedactingFilter(Redactor([secret])).filter(record)
    printed = logging.Formatter().format(record)
    assert secret not in printed and "ValueError: server said: [redacted]" in printed
    assert record.exc_info is not None  # kept: handlers still know there was an exception


# ---- configure_logging --------------------------------------------------------------------------
def test_configure_logging_twice_keeps_one_handler_and_takes_the_new_level(capsys):
    first = configure_logging(Settings.load({"OPENAI_API_KEY": "first-KEY-1111"}))
    second = configure_logging(Settings.load({"OPENAI_API_KEY": "second-KEY-2222", "BURROW_LOG_LEVEL": "debug"}))
    assert first is second
    for name in LOGGERS:
        logger = logging.getLogger(name)
        assert [h for h in logger.handlers if h.get_name() == HANDLER_NAME] == [first]
        assert logger.level == logging.DEBUG
    logging.getLogger("core.test").warning("once: %s %s", "first-KEY-1111", "second-KEY-2222")
    logging.getLogger("ui.test").debug("debug lines show at DEBUG")
    printed = capsys.readouterr().err
    assert printed.count("once:") == 1 and "debug lines show" in printed
    assert "KEY-1111" not in printed and "KEY-2222" not in printed  # an old key stays secret


def test_the_default_level_hides_info():
    configure_logging(Settings.load({}))
    assert logging.getLogger("core").level == logging.WARNING
    assert not logging.getLogger("core.chat").isEnabledFor(logging.INFO)


# ---- the pages: start-up and page errors are logged once by ui/services.py ---------------------
@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, llm_server: FakeOpenAI) -> Iterator[Path]:
    st.cache_resource.clear()
    monkeypatch.setenv("BURROW_DATABASE_URL", f"sqlite:///{tmp_path / 'burrow.db'}")
    monkeypatch.setenv("BURROW_TRACKER_PROJECT", "off")
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    yield tmp_path
    st.cache_resource.clear()


def start_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_settings_error_at_start_is_logged_once(app_env, monkeypatch, caplog):
    monkeypatch.setenv("BURROW_LOG_LEVEL", "loud")
    at = start_app()
    assert "BURROW_LOG_LEVEL" in at.error[0].value
    [record] = warnings_and_up(caplog)
    assert record.name == "ui.services" and isinstance(record.exc_info[1], SettingsError)


def test_a_database_that_is_down_at_start_is_logged_once_without_the_password(app_env, monkeypatch, caplog, capsys):
    monkeypatch.setenv("BURROW_DATABASE_URL", "postgresql+psycopg://burrow:pg-SECRET-71c3@127.0.0.1:9/burrow")
    at = start_app()
    assert "database is not available" in at.error[0].value
    [record] = warnings_and_up(caplog)
    assert record.name == "ui.services" and isinstance(record.exc_info[1], StorageError)
    printed = capsys.readouterr().err
    assert "The database is not available" in printed and "pg-SECRET" not in printed


def test_a_database_error_in_a_page_is_logged_once(app_env, caplog):
    at = start_app()
    at.chat_input[0].set_value("before the trouble").run()
    assert not at.exception and not at.error
    broken = create_engine(f"sqlite:///{app_env / 'burrow.db'}")
    try:  # the database loses its tables under the running app (a restore gone wrong, another program)
        with broken.begin() as conn:
            names = [t for t in conn.dialect.get_table_names(conn) if t.startswith("burrow_")]
            # the FTS5 table first: dropping it drops its shadow tables (burrow_search_fts_*) with it
            for table in sorted(names, key=lambda t: t != "burrow_search_fts"):
                if table == "burrow_search_fts" or not table.startswith("burrow_search_fts_"):
                    conn.execute(text(f"DROP TABLE {table}"))
    finally:
        broken.dispose()
    caplog.clear()
    at.run()
    assert not at.exception and "database is not available" in at.error[0].value
    [record] = warnings_and_up(caplog)
    assert (record.name, record.levelno) == ("ui.services", logging.ERROR)
    assert isinstance(record.exc_info[1], StorageError)
