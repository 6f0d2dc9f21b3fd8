"""GET /api/v1/search (server/routes/search.py) on real uvicorn, SQLite and PostgreSQL: ranked hits with
snippet offsets, odd queries answered (never a 500), the schema fuzz for the route."""
from __future__ import annotations

import httpx
import pytest
from burr.core import State

from tests.api.conftest import ApiServer
from tests.api.test_schema import fuzz

SEARCH = "GET /api/v1/search"


@pytest.fixture
def api(db_url, start_api) -> ApiServer:
    return start_api(database_url=db_url)


def seed(api: ApiServer, key: str, messages: list[str]) -> None:
    persister = api.service._persister
    history: list[dict] = []
    for seq, content in enumerate(messages):
        history = [*history, {"role": "user" if seq % 2 == 0 else "assistant", "content": content}]
        persister.save(key, "main", seq, "human_input", State({"chat_history": history}), "completed")


def test_search_finds_the_message_with_highlights(api):
    seed(api, "c-otter", ["hello", "river otters hold hands"])
    seed(api, "c-none", ["nothing here"])
    body = httpx.get(f"{api.url}/api/v1/search", params={"q": "otter"}).json()
    [hit] = body["hits"]
    assert (hit["conversation_id"], hit["branch"], hit["index"], hit["role"]) == ("c-otter", "main", 1, "assistant")
    start, end = hit["highlights"][0]
    assert hit["snippet"][start:end].lower() == "otters"


@pytest.mark.parametrize("q", ['"', "(((", "NEAR(a", "*", "-", "\x01", "🙂", "x" * 999, "a:* & !b"])
def test_odd_queries_are_answered(api, q):
    seed(api, "c1", ["some text"])
    response = httpx.get(f"{api.url}/api/v1/search", params={"q": q})
    assert response.status_code == 200 and isinstance(response.json()["hits"], list)


def test_a_bad_limit_is_problem_json(api):
    response = httpx.get(f"{api.url}/api/v1/search", params={"q": "x", "limit": 0})
    assert response.status_code == 422 and response.headers["content-type"].startswith("application/problem+json")


def test_the_search_route_gets_documented_answers(api):
    seed(api, "c1", ["fuzz me"])
    assert fuzz(api.url, only=[SEARCH]) == []
