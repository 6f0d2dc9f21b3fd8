"""Failures on real parts, through the API: PostgreSQL stopped in the middle of a reply and started
again, the model answering 429 and 500, and clients hanging up mid-stream (on SQLite and PostgreSQL).
Nothing here is mocked: the database is a real server the test stops, the model a real HTTP server."""
from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import openai
import pytest
from httpx_sse import connect_sse

from tests.api.test_conversations import assert_problem
from tests.api.test_streaming import new, wait_saved
from tests.faults.conftest import PG_PASSWORD, SECRET_KEY, start_and_wait

LONG = " ".join(f"w{n}" for n in range(40))


def sse(http: httpx.Client, method: str, url: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The events of one SSE response, read with httpx-sse, as {"id", "event", "data"}."""
    with connect_sse(http, method, url, **kwargs) as source:
        assert source.response.status_code == 200, source.response.read()
        return [{"id": int(e.id), "event": e.event, "data": e.json()} for e in source.iter_sse()]


def wait_ready(http: httpx.Client, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while http.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "the API never became ready again"
        time.sleep(0.2)


@pytest.fixture
def pg_api(start_api, restartable_pg):
    server, url = restartable_pg
    return server, start_api(database_url=url)


def test_on_postgres_send_stream_and_read_back(start_api, pg_url):
    api = start_api(database_url=pg_url)
    with httpx.Client(base_url=api.url, timeout=10) as http:
        cid = new(http)
        events = sse(http, "POST", f"/api/v1/conversations/{cid}/messages", json={"content": "on postgres"})
        assert [e["id"] for e in events] == list(range(len(events)))
        assert events[-2]["event"] == "message.completed" and events[-1]["data"]["outcome"] == "answered"
        messages = http.get(f"/api/v1/conversations/{cid}/messages").json()
        assert [m["content"] for m in messages["messages"]] == ["on postgres", "Echo: on postgres"]
        assert messages["sequence_id"] == events[-2]["data"]["sequence_id"]


def test_database_down_mid_reply_is_503_then_recovers(pg_api, llm_server, caplog):
    server, api = pg_api
    llm_server.chunk_delay = 0.05
    with httpx.Client(base_url=api.url, timeout=30) as http:
        cid = new(http)
        answer: dict[str, httpx.Response] = {}
        sending = threading.Thread(target=lambda: answer.update(
            r=http.post(f"/api/v1/conversations/{cid}/messages", json={"content": LONG})))
        sending.start()
        wait_for(lambda: any(r.get("stream") for r in llm_server.requests))  # the model is streaming
        server.stop()  # PostgreSQL goes away while the reply is being written
        sending.join(30)
        body = assert_problem(answer["r"], 503)
        assert answer["r"].headers["retry-after"] == "5" and body["kind"] == "storage"
        for response in (http.get("/api/v1/conversations"), http.get("/readyz"),
                         http.post(f"/api/v1/conversations/{new_id()}/messages", json={"content": "x"})):
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "5"
        start_and_wait(server)
        wait_ready(http)
        again = http.post(f"/api/v1/conversations/{cid}/messages", json={"content": "after the outage"})
        assert again.status_code == 200, again.text
        contents = [m["content"] for m in http.get(f"/api/v1/conversations/{cid}/messages").json()["messages"]]
        assert contents[-2:] == ["after the outage", "Echo: after the outage"]
    logged = caplog.text
    assert PG_PASSWORD not in logged and SECRET_KEY not in logged


def new_id() -> str:
    import uuid
    return uuid.uuid4().hex


def wait_for(condition, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---- the model failing ----------------------------------------------------------------------------
def test_model_rate_limit_is_502_passing_on_its_retry_after(client, llm_server):
    cid = new(client)
    llm_server.fail_next(429, retry_after=7)
    response = client.post(f"/api/v1/conversations/{cid}/messages", json={"content": "hi"})
    body = assert_problem(response, 502)
    assert body["kind"] == "rate_limit" and body["retryable"] is True and body["saved"] is True
    assert response.headers["retry-after"] == "7"


@pytest.mark.parametrize("status, kind", [(429, "rate_limit"), (500, "server")])
def test_model_failure_in_a_stream_is_an_error_event_then_done(client, llm_server, status, kind):
    cid = new(client)
    llm_server.fail_next(status)
    events = sse(client, "POST", f"/api/v1/conversations/{cid}/messages", json={"content": "hi"})
    assert [e["event"] for e in events] == ["run.started", "error", "done"]
    error = events[1]["data"]
    assert error["kind"] == kind and error["retryable"] is True and error["saved"] is True and error["message"]
    assert SECRET_KEY not in error["message"]
    assert events[2]["data"]["outcome"] == "failed"
    view = client.get(f"/api/v1/conversations/{cid}/messages").json()
    assert [m["content"] for m in view["messages"]] == ["hi"] and view["failed_step"]


def test_model_rate_limit_through_the_openai_client(api, llm_server):
    llm_server.fail_next(429, retry_after=3)
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused", max_retries=0, timeout=10) as oai:
        with pytest.raises(openai.APIStatusError) as failed:
            oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502 and failed.value.response.headers["retry-after"] == "3"
    assert failed.value.response.headers["x-burrow-conversation"]


# ---- clients hanging up -------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_api(request, start_api):
    return start_api(database_url=request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url"))


def test_hanging_up_mid_stream_keeps_the_whole_reply(any_api, llm_server):
    llm_server.chunk_delay = 0.03
    with httpx.Client(base_url=any_api.url, timeout=10) as http:
        cid = new(http)
        with connect_sse(http, "POST", f"/api/v1/conversations/{cid}/messages", json={"content": LONG}) as source:
            deltas = 0
            for event in source.iter_sse():
                deltas += event.event == "message.delta"
                if deltas == 3:
                    break  # the client goes away with most of the reply still to come
        assert len(any_api.service.active_runs(cid)) == 1  # it was still being written when we left
        messages = wait_saved(http, cid, 2)
        assert messages[-1]["content"] == f"Echo: {LONG}" and messages[-1].get("status") != "stopped"


def test_closing_an_openai_stream_keeps_the_whole_reply(any_api, llm_server, client):
    llm_server.chunk_delay = 0.03
    with openai.OpenAI(base_url=f"{any_api.url}/v1", api_key="unused", max_retries=0, timeout=10) as oai:
        with oai.chat.completions.with_streaming_response.create(
                model="m", messages=[{"role": "user", "content": LONG}], stream=True) as response:
            cid = response.headers["x-burrow-conversation"]
            for n, _chunk in enumerate(response.parse()):
                if n == 3:
                    break
    with httpx.Client(base_url=any_api.url, timeout=10) as http:
        messages = wait_saved(http, cid, 2)
    assert messages[-1]["content"] == f"Echo: {LONG}" and messages[-1].get("status") != "stopped"


def test_many_clients_waiting_for_json_answers_hold_up_nobody(start_api, llm_server):
    """More non-streaming sends at once than the worker pool has threads (40): each waits on the
    event loop, so a health check and a listing still answer at once, and every send gets its reply."""
    api = start_api(BURROW_MAX_RUNS="60")
    llm_server.chunk_delay = 0.1  # each reply streams for 4 s
    with httpx.Client(base_url=api.url, timeout=30, limits=httpx.Limits(max_connections=80)) as http:
        ids = [new(http) for _ in range(50)]
        answers: dict[str, httpx.Response] = {}
        senders = [threading.Thread(target=lambda cid=cid: answers.update({cid: http.post(
            f"/api/v1/conversations/{cid}/messages", json={"content": LONG})})) for cid in ids]
        for sender in senders:
            sender.start()
        # all 50 replies are being written at once (with a thread held per waiting client, only 40 could)
        wait_for(lambda: len(llm_server.requests) == 50, within=4)
        began = time.monotonic()
        assert http.get("/healthz").status_code == 200
        assert http.get("/api/v1/conversations", params={"limit": 1}).status_code == 200
        assert time.monotonic() - began < 0.5, "requests waited behind the JSON clients"
        for sender in senders:
            sender.join(30)
    assert sorted(answers) == sorted(ids)
    assert all(r.status_code == 200 and r.json()["outcome"] == "answered" for r in answers.values())
