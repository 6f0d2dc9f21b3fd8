"""Two API servers on one PostgreSQL database (each its own ChatService, connections and relay): a
reply started through one is followed live, whole, through the other, and stopped from it."""
from __future__ import annotations

import httpx

from tests.api.conftest import parse_sse, stream_events

BASE = "/api/v1/conversations"
REPLY = " ".join(f"w{i}" for i in range(40))


def first_events(http: httpx.Client, cid: str, count: int) -> list[dict]:
    """Starts a streamed reply, reads `count` events, hangs up."""
    events: list[dict] = []
    with http.stream("POST", f"{BASE}/{cid}/messages", json={"content": "hello"},
                     headers={"Accept": "text/event-stream"}) as response:
        assert response.status_code == 200
        for event in parse_sse(response.iter_lines()):
            if "comment" not in event:
                events.append(event)
            if len(events) >= count:
                break
    return events


def test_a_reply_started_on_one_server_streams_whole_through_the_other(start_api, pg_url, llm_server):
    llm_server.reply, llm_server.chunk_delay = REPLY, 0.05
    one, two = start_api(database_url=pg_url, BURROW_RELAY="true"), start_api(database_url=pg_url, BURROW_RELAY="true")
    with httpx.Client(base_url=one.url, timeout=10) as a, httpx.Client(base_url=two.url, timeout=10) as b:
        cid = a.post(BASE).json()["id"]
        seen = first_events(a, cid, 5)
        run_id, last = seen[0]["data"]["run_id"], seen[-1]["id"]
        rest = stream_events(b, "GET", f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": str(last)})
        assert [e["id"] for e in rest] == list(range(last + 1, last + 1 + len(rest)))  # nothing lost, nothing twice
        assert rest[-1]["event"] == "done" and rest[-1]["data"]["outcome"] == "answered"
        text = "".join(e["data"]["text"] for e in seen + rest if e["event"] == "message.delta")
        assert text == REPLY
        saved = b.get(f"{BASE}/{cid}/messages").json()["messages"][-1]
        assert saved["content"] == REPLY


def test_stop_through_the_other_server_stops_the_reply(start_api, pg_url, llm_server):
    llm_server.reply, llm_server.chunk_delay = REPLY * 3, 0.05  # ~6 s
    one, two = start_api(database_url=pg_url, BURROW_RELAY="true"), start_api(database_url=pg_url, BURROW_RELAY="true")
    with httpx.Client(base_url=one.url, timeout=15) as a, httpx.Client(base_url=two.url, timeout=15) as b:
        cid = a.post(BASE).json()["id"]
        run_id = first_events(a, cid, 3)[0]["data"]["run_id"]
        assert b.post(f"/api/v1/runs/{run_id}/stop").status_code == 202
        rest = stream_events(b, "GET", f"/api/v1/runs/{run_id}/events")
        assert rest[-1]["event"] == "done" and rest[-1]["data"]["outcome"] == "stopped"
        saved = a.get(f"{BASE}/{cid}/messages").json()["messages"][-1]
        assert saved.get("status") == "stopped" and len(saved["content"]) < len(REPLY * 3)


def test_an_unknown_run_is_still_a_404(start_api, pg_url):
    server = start_api(database_url=pg_url, BURROW_RELAY="true")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.get("/api/v1/runs/no-such-run/events").status_code == 404
