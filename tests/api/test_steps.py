"""Steps (persisted snapshots) and forks over HTTP."""
from __future__ import annotations

from tests.api.test_conversations import assert_problem, send


def test_steps_step_and_fork(client):
    cid = client.post("/api/v1/conversations").json()["id"]
    first = send(client, cid, "one")
    send(client, cid, "two")
    steps = client.get(f"/api/v1/conversations/{cid}/steps").json()
    assert steps["total"] == len(steps["items"]) >= 2
    assert [s["sequence_id"] for s in steps["items"]] == sorted(s["sequence_id"] for s in steps["items"])
    page = client.get(f"/api/v1/conversations/{cid}/steps", params={"offset": 1, "limit": 1}).json()
    assert page["items"] == steps["items"][1:2]

    step = client.get(f"/api/v1/conversations/{cid}/steps/{first['sequence_id']}").json()
    assert step["sequence_id"] == first["sequence_id"] and step["branch"] == steps["branch"]
    assert [m["content"] for m in step["state"]["chat_history"]] == ["one", "Echo: one"]
    assert set(step["diff"]) == {"added", "changed", "removed", "appended"}
    assert_problem(client.get(f"/api/v1/conversations/{cid}/steps/9999"), 404)
    assert_problem(client.get(f"/api/v1/conversations/{cid}/steps", params={"branch": "nope"}), 404)

    forked = client.post(f"/api/v1/conversations/{cid}/forks",
                         json={"branch": steps["branch"], "sequence_id": first["sequence_id"]})
    assert forked.status_code == 201, forked.text
    branch = forked.json()["branch"]
    assert branch != steps["branch"]
    messages = client.get(f"/api/v1/conversations/{cid}/messages", params={"branch": branch}).json()
    assert [m["content"] for m in messages["messages"]] == ["one", "Echo: one"]
    assert send(client, cid, "three", branch=branch)["message"]["content"] == "Echo: three"
    assert_problem(client.post(f"/api/v1/conversations/{cid}/forks", json={"branch": branch}), 422)
    assert_problem(client.post(f"/api/v1/conversations/{cid}/forks",
                               json={"branch": branch, "sequence_id": 9999}), 404)
