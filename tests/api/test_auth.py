"""API tokens on real uvicorn (BURROW_AUTH=proxy; the API takes tokens in every mode but none): 401
without one, another user's conversation is a 404 like an unknown id, the token is the OpenAI SDK's
key, and a user over their limit gets 429 with Retry-After while others go on."""
from __future__ import annotations

import httpx
import openai
import pytest

from core.users import User

ALICE = User("proxy:alice@example.com", "alice@example.com", "alice@example.com")
BOB = User("proxy:bob@example.com", "bob@example.com", "bob@example.com")


@pytest.fixture
def api(start_api):
    return start_api(BURROW_AUTH="proxy", BURROW_USER_MESSAGES_PER_MINUTE="3")


def token_of(api, user: User) -> str:
    return api.service.signed_in(user).create_token("tests")[0]


def as_user(api, token: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, timeout=10, headers={"Authorization": f"Bearer {token}"})


def test_without_a_valid_token_every_route_but_health_is_401(api):
    for headers in ({}, {"Authorization": "Bearer burrow_not-a-token"}, {"Authorization": "Basic YTpi"}):
        for method, path in (("GET", "/api/v1/conversations"), ("POST", "/api/v1/conversations"),
                             ("GET", "/v1/models"), ("GET", "/api/v1/conversations/abc/messages")):
            response = httpx.request(method, api.url + path, headers=headers, timeout=10)
            assert response.status_code == 401, (method, path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer" and "API token" in response.json()["detail"]
    assert httpx.get(api.url + "/healthz").status_code == 200 and httpx.get(api.url + "/readyz").status_code == 200


def test_another_users_conversation_is_not_found_like_an_unknown_id(api):
    with as_user(api, token_of(api, ALICE)) as alice, as_user(api, token_of(api, BOB)) as bob:
        cid = alice.post("/api/v1/conversations", json={"title": "Alice's"}).json()["id"]
        assert alice.post(f"/api/v1/conversations/{cid}/messages", json={"content": "hi"}).status_code == 200
        unknown = api.service.new_conversation_id()
        for method, suffix, body in (("GET", "", None), ("PATCH", "", {"title": "mine"}), ("DELETE", "", None),
                                     ("GET", "/messages", None), ("GET", "/branches", None)):
            theirs = bob.request(method, f"/api/v1/conversations/{cid}{suffix}", json=body)
            never = bob.request(method, f"/api/v1/conversations/{unknown}{suffix}", json=body)
            assert theirs.status_code == never.status_code == 404, (method, suffix, theirs.text)
            assert theirs.json()["detail"].replace(cid, "ID") == never.json()["detail"].replace(unknown, "ID")
        assert bob.get("/api/v1/conversations").json()["items"] == []
        assert [c["id"] for c in alice.get("/api/v1/conversations").json()["items"]] == [cid]
        assert alice.get(f"/api/v1/conversations/{cid}").json()["title"] == "Alice's"


def test_the_token_is_the_openai_sdks_key_and_limits_are_per_user(api):
    alice_key, bob_key = token_of(api, ALICE), token_of(api, BOB)
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key=alice_key, max_retries=0, timeout=10) as alice:
        for text in ("one", "two", "three"):
            reply = alice.chat.completions.create(model="burrow", messages=[{"role": "user", "content": text}])
            assert reply.choices[0].message.content == f"Echo: {text}"
        with pytest.raises(openai.RateLimitError) as limited:
            alice.chat.completions.create(model="burrow", messages=[{"role": "user", "content": "four"}])
        assert 1 <= int(limited.value.response.headers["retry-after"]) <= 60
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key=bob_key, max_retries=0, timeout=10) as bob:
        assert bob.chat.completions.create(model="burrow", messages=[{"role": "user", "content": "hi"}])
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key="sk-wrong", max_retries=0, timeout=10) as stranger:
        with pytest.raises(openai.AuthenticationError):
            stranger.models.list()
