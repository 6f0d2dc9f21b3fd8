"""The test infrastructure itself: the fake OpenAI server seen through the real `openai` client, the
PostgreSQL and SQLite fixtures, the environment scrubbing and the skip-locally / fail-on-CI rule.

If these fail, every other layer's results mean nothing, so they are checked here against the
real libraries rather than assumed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx2
import openai
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, inspect, select, text
from sqlalchemy.engine import Engine, make_url

from tests.support.fake_openai import FakeOpenAI, split_reply
from tests.support.net import free_port, wait_http_ok

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET123"
HELLO = [{"role": "user", "content": "hello"}]


def client(server: FakeOpenAI, **options: object) -> openai.OpenAI:
    settings = {"base_url": server.base_url, "api_key": SECRET, "max_retries": 0, "timeout": 10.0, **options}
    return openai.OpenAI(**settings)  # type: ignore[arg-type]


def stream_pieces(server: FakeOpenAI, **options: object) -> list[str]:
    chunks = client(server, **options).chat.completions.create(model="fake-model", messages=HELLO, stream=True)
    return [chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices]


# ---- chat completions ---------------------------------------------------------------------------
def test_plain_completion_returns_the_reply_and_records_the_request(llm_server):
    llm_server.reply = "Hello back"
    response = client(llm_server).chat.completions.create(model="fake-llama", messages=HELLO)
    assert response.choices[0].message.content == "Hello back"
    assert response.choices[0].finish_reason == "stop"
    (request,) = llm_server.requests
    assert request["model"] == "fake-llama" and request["messages"] == HELLO
    assert "stream" not in request


def test_default_reply_echoes_the_last_message(llm_server):
    response = client(llm_server).chat.completions.create(model="m", messages=HELLO)
    assert response.choices[0].message.content == "Echo: hello"


def test_reply_callable_receives_the_messages(llm_server):
    llm_server.reply = lambda messages: f"{len(messages)} messages, last: {messages[-1]['content']}"
    response = client(llm_server).chat.completions.create(model="m", messages=HELLO * 2)
    assert response.choices[0].message.content == "2 messages, last: hello"


def test_stream_arrives_in_pieces_that_join_to_the_reply(llm_server):
    llm_server.reply = "The quick brown fox"
    pieces = stream_pieces(llm_server)
    assert pieces == ["", "The", " quick", " brown", " fox", ""]  # role chunk first, finish chunk last
    assert llm_server.requests[0]["stream"] is True


def test_words_per_chunk_groups_words(llm_server):
    llm_server.words_per_chunk = 2
    assert split_reply("a b c d e", 2) == ["a b", " c d", " e"]
    llm_server.reply = "a b c d e"
    assert "".join(stream_pieces(llm_server)) == "a b c d e"


def test_stream_is_really_incremental(llm_server):
    """With chunk_delay the first words arrive long before the last ones, as with a real model."""
    llm_server.reply = "one two three four"
    llm_server.chunk_delay = 0.1
    started, arrivals = time.monotonic(), []
    for chunk in client(llm_server).chat.completions.create(model="m", messages=HELLO, stream=True):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 4
    assert arrivals[0] < 0.1 and arrivals[-1] - arrivals[0] >= 0.25


def test_broken_stream_raises_connection_error_after_the_pieces_sent(llm_server):
    """The server hangs up after 3 text chunks, without the finish chunk or [DONE]."""
    llm_server.reply = "one two three four five six"
    llm_server.break_after_chunks = 3
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        for chunk in client(llm_server, max_retries=2).chat.completions.create(model="m", messages=HELLO, stream=True):
            received.append(chunk.choices[0].delta.content or "")
    assert type(caught.value) is openai.APIConnectionError  # not the APITimeoutError subclass
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert "incomplete chunked read" in str(caught.value.__cause__)
    assert received == ["", "one", " two", " three"]
    assert len(llm_server.requests) == 1  # the client does not retry once a stream has started


# ---- injected failures --------------------------------------------------------------------------
def test_rate_limit_raises_and_carries_retry_after(llm_server):
    llm_server.fail_next(429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as caught:
        client(llm_server).chat.completions.create(model="m", messages=HELLO)
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert len(llm_server.requests) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_raise_internal_server_error(llm_server, status):
    llm_server.fail_next(status)
    with pytest.raises(openai.InternalServerError) as caught:
        client(llm_server).chat.completions.create(model="m", messages=HELLO, stream=True)
    assert caught.value.status_code == status


def test_retry_after_ms_lets_the_client_retry_quickly_then_succeed(llm_server):
    llm_server.reply = "finally"
    llm_server.fail_next(429, times=2, retry_after_ms=10)
    started = time.monotonic()
    response = client(llm_server, max_retries=2).chat.completions.create(model="m", messages=HELLO)
    assert response.choices[0].message.content == "finally"
    assert len(llm_server.requests) == 3
    assert time.monotonic() - started < 1.0  # the header, not the SDK's 0.5 s+ backoff, set the pace


def test_failures_are_served_in_order_then_normal_replies_resume(llm_server):
    llm_server.fail_next(500)
    llm_server.fail_next(404)
    model = client(llm_server)
    with pytest.raises(openai.InternalServerError):
        model.chat.completions.create(model="m", messages=HELLO)
    with pytest.raises(openai.NotFoundError, match="The model `m` does not exist"):
        model.chat.completions.create(model="m", messages=HELLO)
    assert model.chat.completions.create(model="m", messages=HELLO).choices[0].message.content == "Echo: hello"


def test_invalid_key_gets_401_with_the_key_masked(llm_server):
    llm_server.expected_api_key = "sk-the-right-one"
    with pytest.raises(openai.AuthenticationError) as caught:
        client(llm_server).chat.completions.create(model="m", messages=HELLO)
    assert caught.value.code == "invalid_api_key"
    assert "Incorrect API key" in str(caught.value) and SECRET not in str(caught.value)
    right = client(llm_server, api_key="sk-the-right-one").chat.completions.create(model="m", messages=HELLO)
    assert right.choices[0].message.content == "Echo: hello"


def test_slow_first_byte_beyond_the_client_timeout_raises_timeout(llm_server):
    llm_server.first_byte_delay = 1.0
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client(llm_server, timeout=0.2).chat.completions.create(model="m", messages=HELLO, stream=True)
    assert time.monotonic() - started < 0.9


def test_authorization_header_is_received(llm_server):
    client(llm_server).chat.completions.create(model="m", messages=HELLO)
    assert llm_server.received_headers[-1]["authorization"] == f"Bearer {SECRET}"
    assert llm_server.headers is llm_server.received_headers


def test_reset_forgets_settings_failures_and_records(llm_server):
    llm_server.fail_next(500, times=3)
    with pytest.raises(openai.InternalServerError):
        client(llm_server).models.list()  # injected errors apply to every endpoint
    llm_server.reply, llm_server.first_byte_delay, llm_server.break_after_chunks = "x", 5.0, 1
    llm_server.reset()
    assert (llm_server.first_byte_delay, llm_server.break_after_chunks, llm_server.requests) == (0.0, None, [])
    assert llm_server.received_headers == []
    assert client(llm_server).chat.completions.create(model="m", messages=HELLO).choices[0].message.content \
        == "Echo: hello"


# ---- moderation, models -------------------------------------------------------------------------
def test_moderation_flags_only_the_configured_word(llm_server):
    moderations = client(llm_server).moderations
    assert moderations.create(input="a nice sentence").results[0].flagged is False
    flagged = moderations.create(input="Graphic VIOLENCE here").results[0]
    assert flagged.flagged is True and flagged.categories.violence is True
    llm_server.flagged_word = "pineapple"
    assert [r.flagged for r in moderations.create(input=["violence", "pineapple pizza"]).results] == [False, True]
    assert len(llm_server.moderation_requests) == 3 and llm_server.requests == []


def test_moderation_honours_injected_errors(llm_server):
    llm_server.fail_next(401)
    with pytest.raises(openai.AuthenticationError):
        client(llm_server).moderations.create(input="hi")


def test_models_are_listed(llm_server):
    assert [model.id for model in client(llm_server).models.list()] == ["fake-model"]


# ---- net helpers --------------------------------------------------------------------------------
def test_wait_http_ok_returns_once_the_url_answers(llm_server):
    assert wait_http_ok(f"{llm_server.base_url}/models", timeout=5) < 1.0


def test_wait_http_ok_times_out_on_a_closed_port():
    with pytest.raises(TimeoutError, match="did not answer"):
        wait_http_ok(f"http://127.0.0.1:{free_port()}/", timeout=0.3)


def test_wait_http_ok_fails_fast_when_the_process_dies(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("boom: could not bind\n")
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    proc.wait()
    with pytest.raises(RuntimeError, match="exited with 3(.|\n)*boom: could not bind"):
        wait_http_ok(f"http://127.0.0.1:{free_port()}/", proc=proc, log=log, timeout=10)


# ---- databases ----------------------------------------------------------------------------------
def notes_table(metadata: MetaData) -> Table:
    return Table("notes", metadata, Column("id", Integer, primary_key=True), Column("body", String(200)))


@pytest.fixture
def engine_for() -> Iterator[Callable[[str], Engine]]:
    """Engines made by the test, disposed at the end so databases can be dropped cleanly."""
    engines: list[Engine] = []

    def make(url: str) -> Engine:
        engines.append(create_engine(url))
        return engines[-1]

    yield make
    for engine in engines:
        engine.dispose()


def write_and_read_back(engine: Engine) -> list[tuple[int, str]]:
    metadata = MetaData()
    notes = notes_table(metadata)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(notes.insert(), [{"body": "first"}, {"body": "second ✓"}])
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(notes.c.id, notes.c.body).order_by(notes.c.id))]


SEEN_PG_DATABASES: list[str] = []


@pytest.mark.parametrize("round_", [1, 2])
def test_pg_url_gives_a_fresh_empty_working_database(pg_url, engine_for, request, round_):
    """Runs twice: the second run must get another database, empty although the first wrote a table."""
    url = make_url(pg_url)
    assert url.drivername == "postgresql+psycopg" and url.host == "127.0.0.1" and url.port
    assert request.node.get_closest_marker("postgres"), "tests using pg_url are marked postgres automatically"
    engine = engine_for(pg_url)
    assert inspect(engine).get_table_names() == []
    assert url.database not in SEEN_PG_DATABASES
    SEEN_PG_DATABASES.append(url.database)
    assert write_and_read_back(engine) == [(1, "first"), (2, "second ✓")]


def test_pg_databases_are_dropped_after_their_test(pg_url, engine_for):
    with engine_for(pg_url).connect() as conn:
        names = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
    assert SEEN_PG_DATABASES, "runs after test_pg_url_gives_a_fresh_empty_working_database"
    assert names.isdisjoint(SEEN_PG_DATABASES)


def test_db_url_runs_on_each_backend(db_url, engine_for, request, tmp_path):
    backend = request.node.callspec.params["db_url"]
    assert make_url(db_url).get_backend_name() == {"sqlite": "sqlite", "postgres": "postgresql"}[backend]
    if backend == "sqlite":
        assert db_url == f"sqlite:///{tmp_path}/burrow.db"
    assert write_and_read_back(engine_for(db_url)) == [(1, "first"), (2, "second ✓")]


def test_tracker_dir_is_an_empty_existing_folder(tracker_dir):
    assert tracker_dir.is_dir() and list(tracker_dir.iterdir()) == []


# ---- environment and the skip/fail rule ---------------------------------------------------------
def test_no_developer_settings_reach_tests():
    leaked = [name for name in os.environ if name.startswith(("OPENAI_", "BURROW_"))]
    assert leaked == []


def run_nested_pytest(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    """Runs two tests of this file in a fresh pytest, with no PostgreSQL and a developer's settings."""
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    env.update(PG_CTL_REAL="/nonexistent/pg_ctl", OPENAI_API_KEY="sk-developer-REAL", BURROW_DATABASE_URL="x",
               **({"CI": ci} if ci else {}))
    nodes = [f"tests/test_support.py::{name}" for name in
             ("test_no_developer_settings_reach_tests", "test_pg_url_gives_a_fresh_empty_working_database[1]")]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", f"--basetemp={tmp_path}",
                           *nodes], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)


def test_without_postgres_tests_skip_locally(tmp_path):
    result = run_nested_pytest(tmp_path, ci="")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout
    assert "no PostgreSQL server binaries" in result.stdout


def test_without_postgres_tests_fail_on_ci(tmp_path):
    result = run_nested_pytest(tmp_path, ci="true")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 1 error" in result.stdout
    assert "CI is set" in result.stdout
