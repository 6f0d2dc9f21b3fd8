"""The conversation as a tree over HTTP (real uvicorn, httpx): edit, regenerate, versions, the tree,
feedback, and the facts that come with each reply."""
from __future__ import annotations

import httpx

from tests.api.conftest import stream_events

BASE = "/api/v1/conversations"


def chat(http: httpx.Client, *texts: str) -> tuple[str, str]:
    """A conversation with one answered turn per text; returns (id, branch)."""
    cid = http.post(BASE).json()["id"]
    for text in texts:
        assert http.post(f"{BASE}/{cid}/messages", json={"content": text}).status_code == 200
    return cid, http.get(f"{BASE}/{cid}/messages").json()["branch"]


def test_edit_streams_on_a_new_branch_and_the_versions_show_both(client):
    cid, original = chat(client, "one", "two")
    events = stream_events(client, "POST", f"{BASE}/{cid}/messages/2/edit", json={"content": "two, edited",
                                                                                 "branch": original})
    new_branch = events[0]["data"]["app_id"]
    assert new_branch != original and events[-1]["data"]["outcome"] == "answered"
    shown = client.get(f"{BASE}/{cid}/messages", params={"branch": new_branch}).json()["messages"]
    assert [m["content"] for m in shown] == ["one", "Echo: one", "two, edited", "Echo: two, edited"]
    versions = client.get(f"{BASE}/{cid}/versions", params={"branch": original}).json()
    assert versions == {"branch": original, "items": [{"index": 2, "current": 0, "branches": [original, new_branch]}]}
    tree = client.get(f"{BASE}/{cid}/tree").json()
    assert tree["roots"] == [original]
    node = next(n for n in tree["branches"] if n["branch"] == new_branch)
    assert (node["parent"], node["inherited"], node["length"]) == (original, 2, 4)


def test_regenerate_as_json_and_facts_with_each_reply(client, llm_server):
    cid, original = chat(client, "hello")
    llm_server.reply = "a second answer"
    result = client.post(f"{BASE}/{cid}/messages/1/regenerate", json={"branch": original})
    assert result.status_code == 200 and result.json()["message"]["content"] == "a second answer"
    reply = client.get(f"{BASE}/{cid}/messages").json()["messages"][-1]  # the newest branch
    assert reply["content"] == "a second answer" and reply["finish_reason"] == "stop"
    assert reply["tokens_out"] == "3" and int(reply["total_ms"]) >= int(reply["ttft_ms"]) >= 0  # saved as text


def test_feedback_set_changed_listed_and_cleared(client):
    cid, branch = chat(client, "rate me")
    put = client.put(f"{BASE}/{cid}/messages/1/feedback", json={"thumbs_up": True, "comment": "good", "tags": ["x"]})
    assert put.status_code == 200 and put.json()["thumbs_up"] is True
    assert put.json()["annotation"]["observations"][0]["data_fields"] == {"note": "good"}
    client.put(f"{BASE}/{cid}/messages/1/feedback", json={"thumbs_up": False, "comment": "good"})
    listed = client.get(f"{BASE}/{cid}/feedback").json()
    assert [(f["branch"], f["message_index"], f["thumbs_up"]) for f in listed] == [(branch, 1, False)]
    cleared = client.put(f"{BASE}/{cid}/messages/1/feedback", json={"thumbs_up": None})
    assert cleared.status_code == 200 and cleared.json() is None
    assert client.get(f"{BASE}/{cid}/feedback").json() == []


def test_what_does_not_fit_is_a_clear_problem(client):
    cid, branch = chat(client, "only one")
    wrong_role = client.post(f"{BASE}/{cid}/messages/1/edit", json={"content": "x"})
    assert wrong_role.status_code == 422 and "not a message of yours" in wrong_role.json()["detail"]
    assert client.post(f"{BASE}/{cid}/messages/0/regenerate").status_code == 422
    assert client.put(f"{BASE}/{cid}/messages/0/feedback", json={"thumbs_up": True}).status_code == 422
    assert client.post(f"{BASE}/{cid}/messages/9/edit", json={"content": "x"}).status_code == 422
    unknown = client.post(f"{BASE}/{cid}/messages/0/edit", json={"content": "x", "branch": "nope"})
    assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"{BASE}/no-such-conversation/tree").status_code == 404
    assert client.post(f"{BASE}/{cid}/messages/-1/edit", json={"content": "x"}).status_code == 422
    too_long = client.post(f"{BASE}/{cid}/messages/0/edit", json={"content": "x" * 100_001})
    assert too_long.status_code == 413
    assert len(client.get(f"{BASE}/{cid}/tree").json()["branches"]) == 1  # nothing was forked
