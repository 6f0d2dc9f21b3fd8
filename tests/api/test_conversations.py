"""Conversations over HTTP: create, list, get, rename, delete, messages; errors as problem+json."""
from __future__ import annotations

import httpx

from core.chat import ChatService


def assert_problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def send(client: httpx.Client, cid: str, content: str, **extra) -> dict:
    response = client.post(f"/api/v1/conversations/{cid}/messages", json={"content": content, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_ready_is_503_when_the_database_is_down(api, client, monkeypatch):
    from core.errors import StorageError

    def down():
        raise StorageError("database is down")

    monkeypatch.setattr(api.service, "ping", down)
    body = assert_problem(client.get("/readyz"), 503)
    assert "database is down" in body["detail"]


def test_create_send_and_read_back(client, llm_server):
    created = client.post("/api/v1/conversations", json={"title": "Trip plans"})
    assert created.status_code == 201
    conv = created.json()
    assert set(conv) >= {"id", "title", "created_at", "updated_at", "message_count", "branch"}
    assert conv["title"] == "Trip plans" and conv["message_count"] == 0
    assert client.get(f"/api/v1/conversations/{conv['id']}").json()["title"] == "Trip plans"

    result = send(client, conv["id"], "hello there")
    assert result["outcome"] == "answered"
    assert result["message"]["content"] == "Echo: hello there"
    assert isinstance(result["sequence_id"], int) and result["run_id"]

    messages = client.get(f"/api/v1/conversations/{conv['id']}/messages").json()
    assert [m["role"] for m in messages["messages"]] == ["user", "assistant"]
    assert messages["sequence_id"] == result["sequence_id"] and messages["branch"]

    got = client.get(f"/api/v1/conversations/{conv['id']}").json()
    assert got["message_count"] == 2 and got["branch"] == messages["branch"]


def test_list_search_and_cursor(client):
    ids = [client.post("/api/v1/conversations").json()["id"] for _ in range(3)]
    for n, cid in enumerate(ids):
        send(client, cid, f"topic{n} words")
    first = client.get("/api/v1/conversations", params={"limit": 2}).json()
    assert [i["id"] for i in first["items"]] == [ids[2], ids[1]]
    assert first["next_cursor"] == first["items"][-1]["activity"]
    rest = client.get("/api/v1/conversations", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [i["id"] for i in rest["items"]] == [ids[0]] and rest["next_cursor"] is None
    found = client.get("/api/v1/conversations", params={"q": "topic1"}).json()
    assert [i["id"] for i in found["items"]] == [ids[1]]
    assert_problem(client.get("/api/v1/conversations", params={"limit": 0}), 422)


def test_rename_and_delete(client):
    cid = client.post("/api/v1/conversations").json()["id"]
    send(client, cid, "hi")
    renamed = client.patch(f"/api/v1/conversations/{cid}", json={"title": "Renamed"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Renamed"
    assert_problem(client.patch(f"/api/v1/conversations/{cid}", json={"name": "x"}), 422)
    assert client.delete(f"/api/v1/conversations/{cid}").status_code == 204
    assert_problem(client.get(f"/api/v1/conversations/{cid}"), 404)
    assert_problem(client.delete(f"/api/v1/conversations/{cid}"), 404)


def test_unknown_and_malformed_ids_are_404(client):
    for cid in ("0123456789abcdef", "bad%20id%21%21", "x" * 300):
        assert_problem(client.get(f"/api/v1/conversations/{cid}"), 404)
        assert_problem(client.get(f"/api/v1/conversations/{cid}/messages"), 404)
        assert_problem(client.patch(f"/api/v1/conversations/{cid}", json={"title": "t"}), 404)
        assert_problem(client.post(f"/api/v1/conversations/{cid}/retry"), 404)
    assert_problem(client.post("/api/v1/conversations/bad%20id/messages", json={"content": "hi"}), 404)
    assert_problem(client.get("/api/v1/runs/nope/events"), 404)
    assert_problem(client.post("/api/v1/runs/nope/stop"), 404)
    assert_problem(client.get("/api/v1/nothing-here"), 404)


def test_invalid_bodies_are_422_and_long_ones_413(client):
    cid = client.post("/api/v1/conversations").json()["id"]
    url = f"/api/v1/conversations/{cid}/messages"
    body = assert_problem(client.post(url, json={"text": "hi"}), 422)
    assert body["errors"] and "content" in body["detail"]
    assert_problem(client.post(url, content=b"not json", headers={"content-type": "application/json"}), 422)
    assert_problem(client.post(url, json={"content": "   "}), 422)
    body = assert_problem(client.post(url, json={"content": "x" * 20_001}), 413)
    assert "20,000" in body["detail"]


def test_stale_expected_sequence_id_is_409(client):
    cid = client.post("/api/v1/conversations").json()["id"]
    first = send(client, cid, "one")
    url = f"/api/v1/conversations/{cid}/messages"
    body = assert_problem(client.post(url, json={"content": "two", "expected_sequence_id": first["sequence_id"] - 1}),
                          409)
    assert body["latest_sequence_id"] == first["sequence_id"]
    second = send(client, cid, "two", expected_sequence_id=first["sequence_id"])
    assert second["outcome"] == "answered" and second["sequence_id"] > first["sequence_id"]


def test_model_failure_is_502_then_retry_answers(client, llm_server):
    cid = client.post("/api/v1/conversations").json()["id"]
    llm_server.fail_next(500)
    body = assert_problem(client.post(f"/api/v1/conversations/{cid}/messages", json={"content": "hello"}), 502)
    assert body["retryable"] is True and body["saved"] is True
    retried = client.post(f"/api/v1/conversations/{cid}/retry")
    assert retried.status_code == 200, retried.text
    assert retried.json()["message"]["content"] == "Echo: hello"
    assert_problem(client.post(f"/api/v1/conversations/{cid}/retry"), 409)  # nothing left to retry
    roles = [m["role"] for m in client.get(f"/api/v1/conversations/{cid}/messages").json()["messages"]]
    assert roles == ["user", "assistant"]


def test_model_timeout_is_504(client, llm_server):
    cid = client.post("/api/v1/conversations").json()["id"]
    llm_server.first_byte_delay = 3.0  # the request timeout is 2 s
    body = assert_problem(client.post(f"/api/v1/conversations/{cid}/messages", json={"content": "hi"}), 504)
    assert body["kind"] == "timeout"


def test_busy_is_429_with_retry_after(start_api, llm_server):
    api = start_api(BURROW_MAX_RUNS="1")
    llm_server.chunk_delay = 0.2
    with httpx.Client(base_url=api.url, timeout=10) as http:
        a, b = (http.post("/api/v1/conversations").json()["id"] for _ in range(2))
        run = api.service.send(a, "one two three four five")
        response = http.post(f"/api/v1/conversations/{b}/messages", json={"content": "hi"})
        body = assert_problem(response, 429)
        assert response.headers["retry-after"] == "1" and "BURROW_MAX_RUNS" in body["detail"]
        run.stop()
        run.wait(5)


def test_storage_error_is_503_with_retry_after(api, client, monkeypatch):
    from core.errors import StorageError

    def broken(*args, **kwargs):
        raise StorageError("Could not reach the database.")

    monkeypatch.setattr(api.service, "conversations", broken)
    response = client.get("/api/v1/conversations")
    assert_problem(response, 503)
    assert response.headers["retry-after"] == "5"


def test_a_conversation_from_the_api_is_what_the_app_sees(api, client, sqlite_url, llm_server):
    from tests.faults.conftest import service_settings

    cid = client.post("/api/v1/conversations").json()["id"]
    send(client, cid, "from the api")
    other = ChatService.from_settings(service_settings(sqlite_url, llm_server.base_url))
    try:
        view = other.open(cid)
        assert [m["content"] for m in view.messages] == ["from the api", "Echo: from the api"]
        assert view.failed_step is None and view.unanswered == ()
        assert other.conversation(cid).message_count == 2
    finally:
        other.close()
