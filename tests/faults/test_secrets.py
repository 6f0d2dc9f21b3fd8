"""The API key never leaves the SDK client: not into state, the database, the tracker or the logs.

A whole session runs with a recognisable key taken from the environment, as the app reads it: a
chat, a model failure, a retry, a Stop, a moderation call. Then every place Burrow writes is searched:
the database (raw SQLite file bytes, and every row of every table on both databases, compressed
values unpacked), the Burr tracker's files, the log records of every logger at DEBUG (openai and
httpx included) and what the code hands back (errors, views, settings).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import MetaData, create_engine, select

from core.chat import ChatService
from core.settings import Settings
from core.storage.codec import unpack_raw

KEY = "sk-test-SECRET-9d41c0e7b2a84f16a3c5"
FRAGMENTS = (KEY, KEY[8:], KEY[-12:])  # the whole key, and pieces that would survive masking or cuts


def row_values(url: str) -> Iterator[tuple[str, object]]:
    """Every value of every Burrow table, compressed blobs unpacked too."""
    engine = create_engine(url)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                for row in conn.execute(select(table)):
                    for value in row:
                        yield table.name, value
                        if isinstance(value, (bytes, memoryview)) and bytes(value[:1]) in (b"z", b"4"):
                            yield table.name, unpack_raw(value)
    finally:
        engine.dispose()


def leaks(text: str | bytes) -> list[str]:
    haystack = text if isinstance(text, str) else bytes(text).decode("utf-8", "replace")
    return [fragment for fragment in FRAGMENTS if fragment in haystack]


def run_session(service: ChatService, llm_server) -> str:
    """Chat, fail (401 and 500), retry, stop and moderate: every path that talks to the model."""
    pk = service.new_conversation_id()
    assert "".join(service.send(pk, "hello")) == "Echo: hello"
    for status in (401, 500):
        llm_server.fail_next(status)
        failed = service.send(pk, f"this one fails with {status}")
        list(failed)
        assert failed.outcome == "failed" and not leaks(str(failed.error)) and not leaks(repr(failed.error))
        retry = service.retry(pk)
        list(retry)
        assert retry.outcome == "answered"
    llm_server.reply, llm_server.chunk_delay = " ".join(["long"] * 50), 0.01
    stopped = service.send(pk, "stop me")
    for _ in stopped:
        stopped.stop()
    assert stopped.outcome == "stopped"
    return pk


@pytest.fixture
def session_env(monkeypatch, db_url, llm_server, tracker_dir) -> Settings:
    for name, value in {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm_server.base_url,
                        "BURROW_DATABASE_URL": db_url, "BURROW_MAX_RETRIES": "0",
                        "BURROW_TRACKER_PROJECT": "secrets-check", "BURROW_TRACKER_DIR": str(tracker_dir),
                        "BURROW_USE_MODERATION": "true"}.items():
        monkeypatch.setenv(name, value)
    return Settings.load(secrets={})


def test_the_api_key_is_nowhere_after_a_session(session_env, llm_server, db_url, tracker_dir, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore", "burr", "core", "sqlalchemy"):
        caplog.set_level(logging.DEBUG, logger=name)
    service = ChatService.from_settings(session_env)
    try:
        pk = run_session(service, llm_server)
        assert llm_server.received_headers[0]["authorization"] == f"Bearer {KEY}"  # the key was really used
        assert llm_server.moderation_requests  # and the moderation path ran
        view = service.open(pk)
        assert not leaks(repr(view)) and not leaks(repr(service.settings)) and not leaks(str(service.model.label))
        assert not leaks(repr(service.application(pk).state.get_all()))
    finally:
        service.persister.engine.dispose()

    found = [(table, value) for table, value in row_values(db_url) if leaks(value if isinstance(value, (str, bytes, memoryview)) else str(value))]
    assert found == []
    if db_url.startswith("sqlite"):
        files = list(Path(db_url.removeprefix("sqlite:///")).parent.glob("burrow.db*"))
        assert files and all(not leaks(f.read_bytes()) for f in files), files

    tracked = [p for p in tracker_dir.rglob("*") if p.is_file()]
    assert tracked, "the tracker wrote nothing, so this check would prove nothing"
    assert [p for p in tracked if leaks(p.read_bytes())] == []

    assert any(r.name.startswith("openai") for r in caplog.records), "no openai DEBUG records captured"
    for record in caplog.records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        assert not leaks(text), (record.name, text[:300])


# ---- a model error whose body quotes the key, with Burr's tracker on ----------------------------
@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging (called below, as the app does) changes process-wide loggers: undo it afterwards."""
    from core.logs import HANDLER_NAME, LOGGERS

    loggers = [logging.getLogger(name) for name in (*LOGGERS, "burr.core.application")]
    saved = [(logger, logger.level, list(logger.handlers), list(logger.filters)) for logger in loggers]
    for logger in loggers[:len(LOGGERS)]:
        logger.handlers[:] = [h for h in logger.handlers if h.get_name() != HANDLER_NAME]
    yield
    for logger, level, handlers, filters in saved:
        logger.setLevel(level)
        logger.handlers[:], logger.filters[:] = handlers, filters


def where_it_leaks(path: Path) -> list[str]:
    """'file:line: the JSON fields (or text) around the key' for every line of a file that holds it."""
    found = []
    for number, line in enumerate(path.read_bytes().decode("utf-8", "replace").splitlines(), 1):
        if leaks(line):
            at = line.find(KEY[-12:])
            found.append(f"{path.name}:{number}: ...{line[max(0, at - 160):at + 40]}...")
    return found


def test_a_model_error_quoting_the_key_leaves_it_nowhere_with_tracking_on(
        monkeypatch, db_url, llm_server, tracker_dir, caplog, capsys, restore_logging):
    from core.logs import configure_logging
    from core.runs import EventKind

    for name, value in {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": llm_server.base_url,
                        "BURROW_DATABASE_URL": db_url, "BURROW_MAX_RETRIES": "0",
                        "BURROW_TRACKER_PROJECT": "burrow", "BURROW_TRACKER_DIR": str(tracker_dir)}.items():
        monkeypatch.setenv(name, value)
    settings = Settings.load(secrets={})
    configure_logging(settings)  # as ui/services.py does before anything can log
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpcore", "burr", "core", "sqlalchemy"):
        caplog.set_level(logging.DEBUG, logger=name)
    service = ChatService.from_settings(settings)
    problems: list[str] = []
    try:
        pk = service.new_conversation_id()
        assert "".join(service.send(pk, "hello")) == "Echo: hello"
        for status in (400, 500):
            llm_server.fail_next(status, echo_authorization=True)
            run = service.send(pk, f"this one fails with {status} and quotes the key")
            assert run.wait(20) and run.outcome == "failed"
            assert KEY in str(run.error.__cause__)  # the server really sent the key back: the checks can fail
            errors = [e for e in run.events() if e is not None and e.kind is EventKind.ERROR]
            assert len(errors) == 1
            problems += [f"{status}: run.error text" for text in (str(run.error), repr(run.error)) if leaks(text)]
            problems += [f"{status}: the ERROR event's message"] if leaks(errors[0].data["message"]) else []
            problems += [f"{status}: the run's events"] if leaks(repr(list(run.events()))) else []
            view = service.open(pk)
            problems += [f"{status}: the saved failure reason"] if leaks(repr(view)) else []
    finally:
        service.close()

    for table, value in row_values(db_url):
        if leaks(value if isinstance(value, (str, bytes, memoryview)) else str(value)):
            problems.append(f"database table {table}")
    if db_url.startswith("sqlite"):
        files = list(Path(db_url.removeprefix("sqlite:///")).parent.glob("burrow.db*"))
        assert files
        problems += [f"database file {f.name}" for f in files if leaks(f.read_bytes())]

    tracked = [p for p in tracker_dir.rglob("*") if p.is_file()]
    assert any(p.name == "log.jsonl" for p in tracked), "the tracker wrote no log, so this check proves nothing"
    for path in tracked:
        problems += [f"tracker file {path.relative_to(tracker_dir)}: {line}" for line in where_it_leaks(path)]

    for record in caplog.records:  # as any handler prints it (a formatter uses the redacted exc_text once set)
        text = caplog.handler.format(record)
        if leaks(text):
            problems.append(f"log record {record.name} {record.levelname}: {record.getMessage()[:120]}")
    if leaks(capsys.readouterr().err):
        problems.append("stderr (Burrow's log handler)")
    assert problems == [], "the API key leaked:\n" + "\n".join(problems)
