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
                                     ("GET", "/messages", None), ("GET", "/steps", None)):
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


# Every operation that takes an id, with a body it accepts: the test below fails for a new route that
# is not listed here, so a route added later cannot be left unchecked.
BODIES: dict[tuple[str, str], dict | None] = {
    ("GET", "/api/v1/conversations/{conversation_id}"): None,
    ("PATCH", "/api/v1/conversations/{conversation_id}"): {"title": "mine now"},
    ("DELETE", "/api/v1/conversations/{conversation_id}"): None,
    ("GET", "/api/v1/conversations/{conversation_id}/messages"): None,
    ("POST", "/api/v1/conversations/{conversation_id}/messages"): {"content": "bob was here"},
    ("POST", "/api/v1/conversations/{conversation_id}/retry"): {},
    ("GET", "/api/v1/conversations/{conversation_id}/steps"): None,
    ("GET", "/api/v1/conversations/{conversation_id}/steps/{sequence_id}"): None,
    ("POST", "/api/v1/conversations/{conversation_id}/forks"): {"branch": "BRANCH", "sequence_id": 1},
    ("POST", "/api/v1/conversations/{conversation_id}/messages/{index}/edit"): {"content": "bob's edit"},
    ("POST", "/api/v1/conversations/{conversation_id}/messages/{index}/regenerate"): {},
    ("GET", "/api/v1/conversations/{conversation_id}/versions"): None,
    ("GET", "/api/v1/conversations/{conversation_id}/tree"): None,
    ("PUT", "/api/v1/conversations/{conversation_id}/messages/{index}/feedback"): {"thumbs_up": False},
    ("GET", "/api/v1/conversations/{conversation_id}/feedback"): None,
    ("GET", "/api/v1/conversations/{conversation_id}/export"): None,
    ("PUT", "/api/v1/conversations/{conversation_id}/pin"): {"pinned": True},
    ("GET", "/api/v1/runs/{run_id}/events"): None,
    ("POST", "/api/v1/runs/{run_id}/stop"): None,
}


def operations_with_ids(api) -> list[tuple[str, str]]:
    spec = httpx.get(api.url + "/openapi.json", timeout=10).json()
    return sorted((method.upper(), path) for path, ops in spec["paths"].items() for method in ops if "{" in path)


def same_answer(theirs: httpx.Response, never: httpx.Response, theirs_id: str, unknown_id: str) -> bool:
    """The same status and the same words, the id aside: nothing tells the two apart."""
    def words(response: httpx.Response) -> str:
        return response.text.replace(theirs_id, "ID").replace(unknown_id, "ID")
    return theirs.status_code == never.status_code == 404 and words(theirs) == words(never)


def test_every_route_with_an_id_treats_another_users_id_as_unknown(api):
    """Bob tries each operation on Alice's conversation and run, then on ids that do not exist; the
    answers must match, and Alice's conversation must be as she left it."""
    assert sorted(BODIES) == operations_with_ids(api), "a route with an id is not in BODIES"
    with as_user(api, token_of(api, ALICE)) as alice, as_user(api, token_of(api, BOB)) as bob:
        cid = alice.post("/api/v1/conversations", json={"title": "Alice's plans"}).json()["id"]
        sent = alice.post(f"/api/v1/conversations/{cid}/messages", json={"content": "zanzibar secret"}).json()
        before = alice.get(f"/api/v1/conversations/{cid}/messages").json()
        run_id = sent["run_id"]
        unknown, unknown_run = api.service.new_conversation_id(), "0" * len(run_id)
        tried = []
        for (method, path), body in BODIES.items():
            if body and body.get("branch") == "BRANCH":
                body = {**body, "branch": before["branch"]}
            theirs_id, never_id = (run_id, unknown_run) if "{run_id}" in path else (cid, unknown)
            def url(key: str) -> str:
                return path.format(conversation_id=key, run_id=key, sequence_id=1, index=1)
            theirs = bob.request(method, url(theirs_id), json=body)
            never = bob.request(method, url(never_id), json=body)
            assert same_answer(theirs, never, theirs_id, never_id), (method, path, theirs.text, never.text)
            tried.append((method, path, theirs.status_code))
        assert len(tried) == len(BODIES)
        after = alice.get(f"/api/v1/conversations/{cid}/messages").json()
        assert after == before and alice.get(f"/api/v1/conversations/{cid}").json()["title"] == "Alice's plans"
        assert api.service.signed_in(ALICE).feedback_of_conversation(cid) == []  # Bob's thumbs-down is not there
        assert not alice.get(f"/api/v1/conversations/{cid}").json()["pinned"]


def test_search_export_and_the_openai_facade_never_show_another_users_conversation(api):
    with as_user(api, token_of(api, ALICE)) as alice, as_user(api, token_of(api, BOB)) as bob:
        cid = alice.post("/api/v1/conversations", json={}).json()["id"]
        alice.post(f"/api/v1/conversations/{cid}/messages", json={"content": "quetzalcoatl feathers"})
        assert [hit["conversation_id"] for hit in alice.get("/api/v1/search", params={"q": "quetzalcoatl"})
                .json()["hits"]] == [cid]
        assert bob.get("/api/v1/search", params={"q": "quetzalcoatl"}).json()["hits"] == []
        assert "quetzalcoatl" not in bob.get("/api/v1/export").text
        facade = bob.post("/v1/chat/completions", headers={"X-Burrow-Conversation": cid},
                          json={"model": "burrow", "messages": [{"role": "user", "content": "and?"}]})
        never = bob.post("/v1/chat/completions", headers={"X-Burrow-Conversation": api.service.new_conversation_id()},
                         json={"model": "burrow", "messages": [{"role": "user", "content": "and?"}]})
        assert facade.status_code == never.status_code == 404
    assert len(alice_messages(api, cid)) == 2


def alice_messages(api, cid: str) -> list:
    return api.service.signed_in(ALICE).open(cid).messages


def test_an_admin_lists_everyones_conversations_read_only(start_api):
    api = start_api(BURROW_AUTH="proxy", BURROW_ADMINS="root@example.com")
    root = User("proxy:root@example.com", "root@example.com", "root@example.com")
    with as_user(api, token_of(api, ALICE)) as alice, as_user(api, token_of(api, root)) as admin:
        cid = alice.post("/api/v1/conversations", json={}).json()["id"]
        alice.post(f"/api/v1/conversations/{cid}/messages", json={"content": "for my eyes"})
        assert admin.get("/api/v1/conversations").json()["items"] == []  # their own: none
        [listed] = admin.get("/api/v1/conversations", params={"everyone": "true"}).json()["items"]
        assert listed["id"] == cid and listed["owner"] == ALICE.subject
        assert admin.get(f"/api/v1/conversations/{cid}/messages").json()["messages"][0]["content"] == "for my eyes"
        for (method, path), body in BODIES.items():
            if method == "GET" or "{run_id}" in path:
                continue
            body = {**body, "branch": listed["branch"]} if body and "branch" in body else body
            answer = admin.request(method, path.format(conversation_id=cid, sequence_id=1, index=1), json=body)
            assert answer.status_code == 403 and "not change it" in answer.json()["detail"], (method, path, answer.text)
        assert len(alice.get(f"/api/v1/conversations/{cid}/messages").json()["messages"]) == 2
        refused = alice.get("/api/v1/conversations", params={"everyone": "true"})
        assert refused.status_code == 403 and "admins" in refused.json()["detail"]
        assert alice.get("/api/v1/conversations").json()["items"][0]["owner"] == ALICE.subject
        assert alice.get(f"/api/v1/conversations/{cid}").json()["title"] == "for my eyes"
        found = lambda client, **params: [h["conversation_id"] for h in client.get(  # noqa: E731
            "/api/v1/search", params={"q": "eyes", **params}).json()["hits"]]
        assert found(admin) == [] and found(admin, everyone="true") == [cid]  # search finds what is listed
        refused = alice.get("/api/v1/search", params={"q": "eyes", "everyone": "true"})
        assert refused.status_code == 403 and "admins" in refused.json()["detail"]


def test_a_new_conversation_takes_its_first_message_on_another_server_and_only_from_its_user(start_api, sqlite_url):
    """Two servers on one database (as two workers are): the id one hands out is accepted by the other,
    for the user it was made for; for anyone else it is unknown until saved, and then someone else's."""
    first = start_api(BURROW_AUTH="proxy", database_url=sqlite_url)
    second = start_api(BURROW_AUTH="proxy", database_url=sqlite_url)
    with as_user(first, token_of(first, ALICE)) as alice_on_first, \
            as_user(second, token_of(second, ALICE)) as alice_on_second, \
            as_user(second, token_of(second, BOB)) as bob:
        cid = alice_on_first.post("/api/v1/conversations", json={}).json()["id"]
        refused = bob.post(f"/api/v1/conversations/{cid}/messages", json={"content": "mine?"})
        assert refused.status_code == 404
        sent = alice_on_second.post(f"/api/v1/conversations/{cid}/messages", json={"content": "hello there"})
        assert sent.status_code == 200, sent.text
        assert [c["id"] for c in alice_on_first.get("/api/v1/conversations").json()["items"]] == [cid]
        assert bob.post(f"/api/v1/conversations/{cid}/messages", json={"content": "mine?"}).status_code == 404


def test_a_revoked_token_is_401_at_once(api):
    service = api.service.signed_in(ALICE)
    token, info = service.create_token("laptop")
    with as_user(api, token) as alice:
        assert alice.get("/api/v1/conversations").status_code == 200
        assert service.revoke_token(info.id)
        refused = alice.get("/api/v1/conversations")
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
