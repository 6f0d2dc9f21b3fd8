"""PUT /api/v1/conversations/{id}/pin (server/routes/retention.py) on real uvicorn, SQLite and PostgreSQL;
`pinned` in the conversation JSON and the list's cursor across pinned rows."""
from __future__ import annotations

import httpx
import pytest
from burr.core import State

from core.storage import SQLAlchemyPersister
from tests.api.conftest import ApiServer
from tests.api.test_schema import fuzz

PIN = "PUT /api/v1/conversations/{conversation_id}/pin"


@pytest.fixture
def api(db_url, start_api) -> ApiServer:
    return start_api(database_url=db_url)


def seed(api: ApiServer, count: int) -> list[str]:
    """Conversations saved oldest first, through the service's own persister."""
    persister: SQLAlchemyPersister = api.service._persister
    keys = [api.service.new_conversation_id() for _ in range(count)]
    for key in keys:
        state = State({"chat_history": [{"role": "user", "content": f"chat {key}"}], "__SEQUENCE_ID": 0})
        persister.save(key, "main", 0, "human_input", state, "completed")
    return keys


def test_pin_and_unpin_show_in_the_json_and_put_it_first(api):
    old, new = seed(api, 2)
    answer = httpx.put(f"{api.url}/api/v1/conversations/{old}/pin", json={"pinned": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == old and answer.json()["pinned"] is True
    assert httpx.get(f"{api.url}/api/v1/conversations/{old}").json()["pinned"] is True
    listed = httpx.get(f"{api.url}/api/v1/conversations").json()["items"]
    assert [(c["id"], c["pinned"]) for c in listed] == [(old, True), (new, False)]
    again = httpx.put(f"{api.url}/api/v1/conversations/{old}/pin", json={"pinned": True})  # PUT: idempotent
    assert again.status_code == 200 and again.json()["pinned"] is True
    assert httpx.put(f"{api.url}/api/v1/conversations/{old}/pin", json={"pinned": False}).json()["pinned"] is False
    assert [c["id"] for c in httpx.get(f"{api.url}/api/v1/conversations").json()["items"]] == [new, old]


def test_the_list_cursor_pages_across_pinned_rows(api):
    keys = seed(api, 5)
    for key in keys[1], keys[3]:
        assert httpx.put(f"{api.url}/api/v1/conversations/{key}/pin", json={"pinned": True}).status_code == 200
    seen, cursor = [], None
    while True:
        page = httpx.get(f"{api.url}/api/v1/conversations", params={"limit": 1, **({"cursor": cursor} if cursor
                                                                                   is not None else {})}).json()
        seen += [c["id"] for c in page["items"]]
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == [keys[3], keys[1], keys[4], keys[2], keys[0]]


def test_unknown_conversations_and_non_booleans_are_refused(api):
    [key] = seed(api, 1)
    missing = httpx.put(f"{api.url}/api/v1/conversations/{api.service.new_conversation_id()}/pin",
                        json={"pinned": True})
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert httpx.put(f"{api.url}/api/v1/conversations/not%20an%20id/pin", json={"pinned": True}).status_code == 404
    for body in ({"pinned": "yes"}, {"pinned": 1}, {}, {"pinned": None}):
        assert httpx.put(f"{api.url}/api/v1/conversations/{key}/pin", json=body).status_code == 422, body
    assert api.service.conversation(key).pinned is False


def test_the_pin_route_matches_its_schema_under_generated_requests(api):
    assert fuzz(api.url, only=[PIN]) == []
