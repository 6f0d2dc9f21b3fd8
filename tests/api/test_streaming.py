"""Sending with `Accept: text/event-stream`: event order and ids, keep-alives, re-attaching with
Last-Event-ID, stop, and a client that hangs up while the reply goes on."""
from __future__ import annotations

import time

import httpx

from tests.api.conftest import parse_sse, stream_events

KINDS = ["run.started", "message.delta", "message.completed", "done"]


def new(http: httpx.Client) -> str:
    return http.post("/api/v1/conversations").json()["id"]


def wait_saved(http: httpx.Client, cid: str, count: int, timeout: float = 10) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = http.get(f"/api/v1/conversations/{cid}/messages")
        if response.status_code == 200 and len(messages := response.json()["messages"]) >= count \
                and response.json()["run_id"] is None:
            return messages
        time.sleep(0.05)
    raise AssertionError(f"conversation {cid} never had {count} messages")


def test_sse_events_in_order_with_ids(client):
    cid = new(client)
    events = stream_events(client, "POST", f"/api/v1/conversations/{cid}/messages", json={"content": "a b c"})
    assert [e["id"] for e in events] == list(range(len(events)))
    kinds = [e["event"] for e in events]
    assert kinds[0] == "run.started" and kinds[-2:] == ["message.completed", "done"]
    assert set(kinds) <= set(KINDS)
    deltas = "".join(e["data"]["text"] for e in events if e["event"] == "message.delta")
    assert deltas == "Echo: a b c"
    assert events[-2]["data"]["message"]["content"] == "Echo: a b c"
    assert events[-1]["data"]["outcome"] == "answered"
    assert len({e["data"]["run_id"] for e in events}) == 1


def test_keep_alive_comments_during_silence(start_api, llm_server):
    api = start_api(keepalive=0.3)
    llm_server.first_byte_delay = 1.2
    with httpx.Client(base_url=api.url, timeout=10) as http:
        cid = new(http)
        with http.stream("POST", f"/api/v1/conversations/{cid}/messages", json={"content": "hi"},
                         headers={"Accept": "text/event-stream"}) as response:
            seen = list(parse_sse(response.iter_lines()))
    comments = [e for e in seen if "comment" in e]
    assert comments and all(c["comment"] == "keep-alive" for c in comments)
    assert seen[-1]["event"] == "done"


def test_reattach_with_last_event_id_gets_exactly_the_rest(client, llm_server):
    llm_server.chunk_delay = 0.05
    cid = new(client)
    words = " ".join(f"w{n}" for n in range(30))
    first: list[dict] = []
    with client.stream("POST", f"/api/v1/conversations/{cid}/messages", json={"content": words},
                       headers={"Accept": "text/event-stream"}) as response:
        for event in parse_sse(response.iter_lines()):
            if "comment" in event:
                continue
            first.append(event)
            if sum(e["event"] == "message.delta" for e in first) == 5:
                break  # the client drops the connection in the middle of the reply
    run_id = first[0]["data"]["run_id"]
    rest = stream_events(client, "GET", f"/api/v1/runs/{run_id}/events",
                         headers={"Last-Event-ID": str(first[-1]["id"])})
    assert rest[0]["id"] == first[-1]["id"] + 1
    assert [e["id"] for e in first + rest] == list(range(len(first) + len(rest)))
    text = "".join(e["data"]["text"] for e in first + rest if e["event"] == "message.delta")
    assert text == f"Echo: {words}"
    assert rest[-1]["event"] == "done" and rest[-1]["data"]["outcome"] == "answered"
    # attaching from the start replays everything; after the end, nothing but an immediate close
    everything = stream_events(client, "GET", f"/api/v1/runs/{run_id}/events")
    assert [e["id"] for e in everything] == list(range(len(first) + len(rest)))
    assert stream_events(client, "GET", f"/api/v1/runs/{run_id}/events",
                         headers={"Last-Event-ID": str(rest[-1]["id"])}) == []


def test_disconnect_mid_stream_still_saves_the_complete_reply(client, llm_server):
    llm_server.chunk_delay = 0.03
    cid = new(client)
    words = " ".join(f"x{n}" for n in range(20))
    with client.stream("POST", f"/api/v1/conversations/{cid}/messages", json={"content": words},
                       headers={"Accept": "text/event-stream"}) as response:
        for event in parse_sse(response.iter_lines()):
            if event.get("event") == "message.delta":
                break
    messages = wait_saved(client, cid, 2)
    assert messages[-1]["content"] == f"Echo: {words}"
    assert messages[-1].get("status") != "stopped"


def test_stop_keeps_what_arrived(client, llm_server):
    llm_server.chunk_delay = 0.1
    cid = new(client)
    words = " ".join(f"s{n}" for n in range(40))
    events: list[dict] = []
    stopped = None
    with client.stream("POST", f"/api/v1/conversations/{cid}/messages", json={"content": words},
                       headers={"Accept": "text/event-stream"}) as response:
        for event in parse_sse(response.iter_lines()):
            if "comment" in event:
                continue
            events.append(event)
            if stopped is None and sum(e["event"] == "message.delta" for e in events) == 3:
                stopped = client.post(f"/api/v1/runs/{event['data']['run_id']}/stop")
                assert stopped.status_code == 202, stopped.text
    assert events[-1]["event"] == "done" and events[-1]["data"]["outcome"] == "stopped"
    run_id = events[0]["data"]["run_id"]
    assert client.post(f"/api/v1/runs/{run_id}/stop").status_code == 409  # already finished
    saved = wait_saved(client, cid, 2)[-1]
    assert saved["content"] != f"Echo: {words}" and saved["content"].startswith("Echo: s0")


def test_sse_error_event_and_retry_stream(client, llm_server):
    cid = new(client)
    llm_server.fail_next(500)
    events = stream_events(client, "POST", f"/api/v1/conversations/{cid}/messages", json={"content": "boom"})
    assert [e["event"] for e in events] == ["run.started", "error", "done"]
    assert events[1]["data"]["retryable"] is True and events[1]["data"]["saved"] is True
    retried = stream_events(client, "POST", f"/api/v1/conversations/{cid}/retry")
    assert retried[-2]["event"] == "message.completed"
    assert retried[-2]["data"]["message"]["content"] == "Echo: boom"
