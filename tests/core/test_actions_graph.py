"""The Burr graph of a chat turn, run as a real Burr application persisted to a SQLite file."""
from __future__ import annotations

import threading

import pytest

from core.facts import without_facts
from core.actions import REFUSED, STOPPED, model_messages
from core.app import build_application, build_graph
from core.llm import OfflineModel, OpenAIChatModel
from core.safety import REFUSAL, BlockedWordsPolicy
from core.settings import Settings


@pytest.fixture
def fake_model(llm_server) -> OpenAIChatModel:
    """The real openai client against the tests' fake server."""
    return OpenAIChatModel(Settings(openai_base_url=llm_server.base_url, openai_api_key="sk-test", max_retries=0))


def build(persister, model, partition_key="conv-1", **kwargs):
    return build_application(partition_key, persister=persister, llm=model, **kwargs)


def test_graph_has_exactly_the_seed_transitions():
    graph = build_graph()
    assert sorted(a.name for a in graph.actions) == ["ai_response", "human_input", "safety_check", "unsafe_response"]
    edges = {(t.from_.name, t.to.name, t.condition.name) for t in graph.transitions}
    assert edges == {
        ("human_input", "safety_check", "default"),
        ("safety_check", "ai_response", "safe=True"),
        ("safety_check", "unsafe_response", "safe=False"),
        ("ai_response", "human_input", "default"),
        ("unsafe_response", "human_input", "default"),
    }


def test_safe_prompt_goes_through_ai_response_and_back_to_human_input(persister, fake_model, llm_server):
    llm_server.reply = "Hello back to you"
    app = build(persister, fake_model, tracker_project=None)
    assert app.get_next_action().name == "human_input"
    visited = []
    for inputs in ({"prompt": "hello"}, None, None):
        action, _result, _state = app.step(inputs=inputs)
        visited.append(action.name)
    assert visited == ["human_input", "safety_check", "ai_response"]
    assert app.state["safe"] is True
    assert app.state["response"] == "Hello back to you"
    assert [without_facts(m) for m in app.state["chat_history"]] == [
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hello back to you"},
    ]
    assert app.get_next_action().name == "human_input"
    assert len(llm_server.requests) == 1


def test_unsafe_prompt_gets_the_refusal_and_never_calls_the_model(persister, fake_model, llm_server):
    app = build(persister, fake_model)
    visited = [app.step(inputs={"prompt": "something UNSAFE!"})[0].name]
    visited += [app.step()[0].name, app.step()[0].name]
    assert visited == ["human_input", "safety_check", "unsafe_response"]
    assert app.state["safe"] is False
    assert app.state["response"] == REFUSAL
    assert app.state["chat_history"][-1] == {"role": "assistant", "content": REFUSAL, "status": REFUSED}
    assert app.get_next_action().name == "human_input"
    assert llm_server.requests == []


def test_custom_policy_is_used(persister, fake_model, llm_server):
    app = build(persister, fake_model, policy=BlockedWordsPolicy(["banana"]))
    action, _, state = app.run(halt_after=["ai_response", "unsafe_response"], inputs={"prompt": "unsafe is fine here"})
    assert action.name == "ai_response" and state["safe"] is True
    action, _, state = app.run(halt_after=["ai_response", "unsafe_response"], inputs={"prompt": "a Banana."})
    assert action.name == "unsafe_response"
    assert len(llm_server.requests) == 1


def test_ai_response_streams_pieces_then_appends_the_assistant_message(persister, fake_model, llm_server):
    llm_server.reply = "one two three four"
    app = build(persister, fake_model)
    action, container = app.stream_result(halt_after=["ai_response", "unsafe_response"], inputs={"prompt": "count"})
    pieces = [item["delta"] for item in container]
    result, state = container.get()
    assert action.name == "ai_response"
    assert pieces == ["one", " two", " three", " four"]
    assert result == {"response": "one two three four", "stopped": False}
    assert without_facts(state["chat_history"][-1]) == {"role": "assistant", "content": "one two three four"}
    assert persister.load("conv-1", app.uid)["state"]["chat_history"][-1]["content"] == "one two three four"


def test_the_model_gets_the_system_prompt_first_and_only_role_and_content(persister, fake_model, llm_server):
    app = build(persister, fake_model, system_prompt="You are a test.")
    halt = ["ai_response", "unsafe_response"]
    app.run(halt_after=halt, inputs={"prompt": "first"})
    app.run(halt_after=halt, inputs={"prompt": "second"})
    sent = llm_server.requests[-1]["messages"]
    assert sent[0] == {"role": "system", "content": "You are a test."}
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert all(set(m) == {"role", "content"} for m in sent)
    assert sent[-1]["content"] == "second"


def test_model_messages_puts_system_first_and_strips_extra_keys():
    history = [
        {"role": "user", "content": "hi", "sent_at": "2024-01-01"},
        {"role": "assistant", "content": "partial", "status": STOPPED},
        {"role": "user", "content": "more"},
    ]
    assert model_messages("SYS", history) == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "partial"},
        {"role": "user", "content": "more"},
    ]
    assert model_messages("SYS", []) == [{"role": "system", "content": "SYS"}]


def test_model_messages_leaves_out_refused_exchanges():
    history = [
        {"role": "user", "content": "tell me something unsafe"},
        {"role": "assistant", "content": REFUSAL, "status": REFUSED},
        {"role": "user", "content": "ok, the weather?"},
    ]
    sent = model_messages("SYS", history)
    assert all(m["content"] != REFUSAL for m in sent)
    assert all("unsafe" not in m["content"] for m in sent)  # a flagged prompt never reaches the model
    assert sent[-1] == {"role": "user", "content": "ok, the weather?"}


def test_after_a_refusal_the_next_turn_does_not_send_the_flagged_prompt(persister, fake_model, llm_server):
    app = build(persister, fake_model)
    halt = ["ai_response", "unsafe_response"]
    app.run(halt_after=halt, inputs={"prompt": "this is unsafe"})
    app.run(halt_after=halt, inputs={"prompt": "hello"})
    assert len(llm_server.requests) == 1
    assert [m["content"] for m in llm_server.requests[0]["messages"][1:]] == ["hello"]


def test_cancel_mid_stream_keeps_the_partial_reply_marked_stopped(persister):
    cancel = threading.Event()
    app = build(persister, OfflineModel(word_delay=0), cancel=cancel)
    _action, container = app.stream_result(halt_after=["ai_response"], inputs={"prompt": "hi"})
    pieces = []
    for item in container:
        pieces.append(item["delta"])
        cancel.set()
    result, state = container.get()
    assert len(pieces) == 1
    assert result == {"response": pieces[0], "stopped": True}
    assert without_facts(state["chat_history"][-1]) == {"role": "assistant", "content": pieces[0], "status": STOPPED}


def test_every_step_is_persisted_and_a_rebuilt_app_resumes_at_human_input(persister):
    model = OfflineModel(word_delay=0)
    app = build(persister, model)
    app.run(halt_after=["ai_response"], inputs={"prompt": "remember me"})
    saved = [persister.load("conv-1", app.uid, seq)["position"] for seq in range(3)]
    assert saved == ["human_input", "safety_check", "ai_response"]

    again = build(persister, model)  # app_id=None: the conversation's most recent branch
    assert again.uid == app.uid
    assert again.get_next_action().name == "human_input"
    assert again.state["chat_history"] == app.state["chat_history"]
    again.run(halt_after=["ai_response"], inputs={"prompt": "and again"})
    assert again.sequence_id == 5
    assert [m["role"] for m in persister.load("conv-1", None)["state"]["chat_history"]] == ["user", "assistant"] * 2


def test_new_conversation_starts_a_new_branch_with_empty_history(persister):
    app = build(persister, OfflineModel(word_delay=0), partition_key="brand-new")
    assert [without_facts(m) for m in app.state["chat_history"]] == []
    assert persister.list_app_ids("brand-new") == []
    app.step(inputs={"prompt": "x"})
    assert persister.list_app_ids("brand-new") == [app.uid]
