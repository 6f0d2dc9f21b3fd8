"""The OpenAI-compatible facade, driven by the official `openai` client, unchanged."""
from __future__ import annotations

import openai
import pytest

from core.chat import ChatService
from tests.faults.conftest import service_settings


@pytest.fixture
def oai(api):
    with openai.OpenAI(base_url=f"{api.url}/v1", api_key="unused", max_retries=0, timeout=10) as client:
        yield client


def test_models(oai, api):
    assert [m.id for m in oai.models.list().data] == [api.service.settings.model]


def test_completion_starts_a_conversation_and_continues_it(oai, client):
    raw = oai.chat.completions.with_raw_response.create(
        model="burrow", messages=[{"role": "system", "content": "ignored"}, {"role": "user", "content": "hi"}])
    cid = raw.headers["x-burrow-conversation"]
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Echo: hi"
    again = oai.chat.completions.create(model="burrow", messages=[{"role": "user", "content": "more"}],
                                        extra_headers={"X-Burrow-Conversation": cid})
    assert again.choices[0].message.content == "Echo: more"
    messages = client.get(f"/api/v1/conversations/{cid}/messages").json()["messages"]
    assert [m["content"] for m in messages] == ["hi", "Echo: hi", "more", "Echo: more"]


def test_streamed_completion(oai, sqlite_url, llm_server):
    with oai.chat.completions.with_streaming_response.create(
            model="burrow", messages=[{"role": "user", "content": "one two three"}], stream=True) as response:
        cid = response.headers["x-burrow-conversation"]
        chunks = list(response.parse())
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"
    app = ChatService.from_settings(service_settings(sqlite_url, llm_server.base_url))
    try:
        assert [m["content"] for m in app.open(cid).messages] == ["one two three", "Echo: one two three"]
    finally:
        app.close()


def test_facade_errors(oai, llm_server):
    with pytest.raises(openai.NotFoundError):
        oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}],
                                    extra_headers={"X-Burrow-Conversation": "0123456789abcdef"})
    with pytest.raises(openai.UnprocessableEntityError):
        oai.chat.completions.create(model="m", messages=[{"role": "assistant", "content": "x"}])
    llm_server.fail_next(500)
    with pytest.raises(openai.APIStatusError) as failed:
        oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert failed.value.status_code == 502
    llm_server.fail_next(500)
    with pytest.raises(openai.APIError):
        list(oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True))
