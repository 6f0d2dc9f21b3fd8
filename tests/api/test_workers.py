"""Several server processes on one PostgreSQL database with the relay (BURROW_RELAY=true): real
`uvicorn` processes, as a deployment runs them, not servers on threads of the test process. A reply
started through one process and followed through another arrives whole: no delta lost or repeated,
and the completed message is the model's text. Also a stop through the other process, and one
`uvicorn --workers 2` (which process answers is the kernel's choice: the test asks until the other
worker, named by the X-Burrow-Process header, does)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import parse_sse
from tests.faults.conftest import SECRET_KEY
from tests.support.fake_openai import FakeOpenAI
from tests.support.net import free_port, wait_http_ok

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
BASE = "/api/v1/conversations"
REPLY = " ".join(f"w{i}" for i in range(60))  # 60 pieces, 0.05 s apart: about 3 s


@contextlib.contextmanager
def uvicorn(pg_url: str, model: FakeOpenAI, log: Path, workers: int = 1) -> Iterator[str]:
    """`uvicorn --factory server.app:create_app` in a process of its own, with the relay on."""
    port = free_port()
    env = {**os.environ, "BURROW_DATABASE_URL": pg_url, "OPENAI_BASE_URL": model.base_url,
           "OPENAI_API_KEY": SECRET_KEY, "BURROW_MAX_RETRIES": "0", "BURROW_REQUEST_TIMEOUT": "30",
           "BURROW_TRACKER_PROJECT": "off", "BURROW_RELAY": "true"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "server.app:create_app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--workers", str(workers),
               "--timeout-graceful-shutdown", "3"]
    with open(log, "ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        wait_http_ok(f"http://127.0.0.1:{port}/healthz", process, log, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def first_events(http: httpx.Client, cid: str, count: int) -> tuple[str, list[dict]]:
    """Starts a streamed reply, reads `count` events, hangs up: (the answering process, the events)."""
    events: list[dict] = []
    with http.stream("POST", f"{BASE}/{cid}/messages", json={"content": "hello"},
                     headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200, response.read()
        for event in parse_sse(response.iter_lines()):
            if "comment" not in event:
                events.append(event)
            if len(events) >= count:
                break
        return response.headers["x-burrow-process"], events


def rest_of(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.read()
    return [e for e in parse_sse(response.iter_lines()) if "comment" not in e]


def assert_whole(seen: list[dict], rest: list[dict]) -> None:
    """The events before and after the re-attach are one run, each id once and in order, and the
    reply (deltas and the completed message) is exactly the model's."""
    last = seen[-1]["id"]
    assert [e["id"] for e in seen] == list(range(len(seen)))
    assert [e["id"] for e in rest] == list(range(last + 1, last + 1 + len(rest)))  # nothing lost, nothing twice
    assert rest[-1]["event"] == "done" and rest[-1]["data"]["outcome"] == "answered"
    events = seen + rest
    assert "".join(e["data"]["text"] for e in events if e["event"] == "message.delta") == REPLY
    completed = [e for e in events if e["event"] == "message.completed"]
    assert len(completed) == 1 and completed[0]["data"]["message"]["content"] == REPLY


def test_a_reply_started_in_one_process_streams_whole_from_another(pg_url, llm_server, tmp_path):
    llm_server.reply, llm_server.chunk_delay = REPLY, 0.05
    with uvicorn(pg_url, llm_server, tmp_path / "one.log") as one, uvicorn(pg_url, llm_server, tmp_path / "two.log") as two, \
            httpx.Client(base_url=one, timeout=15) as a, httpx.Client(base_url=two, timeout=15) as b:
        cid = a.post(BASE).json()["id"]
        owner, seen = first_events(a, cid, 5)
        assert any(e["event"] == "message.delta" for e in seen)
        run_id = seen[0]["data"]["run_id"]
        with b.stream("GET", f"/api/v1/runs/{run_id}/events",
                      headers={"Accept": "text/event-stream", "Last-Event-ID": str(seen[-1]["id"])}) as response:
            assert response.headers["x-burrow-process"] != owner  # really another process
            rest = rest_of(response)
        assert_whole(seen, rest)
        assert b.get(f"{BASE}/{cid}/messages").json()["messages"][-1]["content"] == REPLY


def test_stop_through_another_process_stops_the_reply(pg_url, llm_server, tmp_path):
    llm_server.reply, llm_server.chunk_delay = REPLY * 3, 0.05  # about 9 s unless stopped
    with uvicorn(pg_url, llm_server, tmp_path / "one.log") as one, uvicorn(pg_url, llm_server, tmp_path / "two.log") as two, \
            httpx.Client(base_url=one, timeout=20) as a, httpx.Client(base_url=two, timeout=20) as b:
        cid = a.post(BASE).json()["id"]
        _owner, seen = first_events(a, cid, 3)
        run_id = seen[0]["data"]["run_id"]
        with b.stream("GET", f"/api/v1/runs/{run_id}/events", headers={"Accept": "text/event-stream"}) as response:
            assert b.post(f"/api/v1/runs/{run_id}/stop").status_code == 202
            rest = rest_of(response)
        assert [e["id"] for e in rest] == list(range(len(rest)))  # from the start, each once
        assert rest[-1]["event"] == "done" and rest[-1]["data"]["outcome"] == "stopped"
        saved = a.get(f"{BASE}/{cid}/messages").json()["messages"][-1]
        assert saved.get("status") == "stopped" and 0 < len(saved["content"]) < len(REPLY * 3)
        streamed = "".join(e["data"]["text"] for e in rest if e["event"] == "message.delta")
        assert streamed == saved["content"]  # what the follower saw is what was kept


def test_uvicorn_with_two_workers_follows_a_reply_across_them(pg_url, llm_server, tmp_path):
    llm_server.reply, llm_server.chunk_delay = REPLY, 0.05
    with uvicorn(pg_url, llm_server, tmp_path / "workers.log", workers=2) as url, \
            httpx.Client(base_url=url, timeout=15) as http:
        cid = http.post(BASE).json()["id"]
        owner, seen = first_events(http, cid, 5)
        run_id = seen[0]["data"]["run_id"]
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(seen[-1]["id"])}
        deadline, asked = time.monotonic() + 20, 0
        while True:  # a new connection each time, so the kernel may hand it to either worker
            assert time.monotonic() < deadline, f"the other worker never answered ({asked} tries)"
            asked += 1
            with httpx.Client(base_url=url, timeout=15) as fresh, \
                    fresh.stream("GET", f"/api/v1/runs/{run_id}/events", headers=headers) as response:
                if response.headers.get("x-burrow-process") == owner:
                    continue
                rest = rest_of(response)
                break
        assert_whole(seen, rest)
