"""Model failures through ChatService: the user's message survives, the failed step is recorded,
the error reads well, and Retry (or the next message) carries the conversation on normally.

The real `openai` client talks to the fake server, so timeouts, 429s and broken streams are the
SDK's own exceptions, translated by core/llm.py.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from core.chat import ChatService
from core.llm import LLMError
from tests.faults.conftest import SECRET_KEY
from tests.support.fake_openai import FakeOpenAI
from tests.support.net import free_port

LONG_REPLY = " ".join(f"word{i}" for i in range(40))


def assert_readable(error: Exception | None) -> None:
    """A message for a person: one short line, no traceback, no key, no exception class names."""
    assert isinstance(error, LLMError), repr(error)
    text = str(error)
    assert text and text[0].isupper() and "\n" not in text and len(text) < 300, text
    for leak in ("Traceback", 'File "', SECRET_KEY, "SECRET", "openai.", "httpx", "Error:"):
        assert leak not in text, (leak, text)


def assert_failed_step_recorded(service: ChatService, pk: str, app_id: str, prompt: str) -> None:
    view = service.open(pk, app_id)
    assert view.messages[-1] == {"role": "user", "content": prompt}
    assert view.failed_step == "ai_response" and view.pending_step == "ai_response"
    last = service.snapshots(pk, app_id, limit=1, newest_first=True)[0]
    assert (last.position, last.status) == ("ai_response", "failed")


def assert_continues(service: ChatService, pk: str, app_id: str, prompt: str) -> None:
    """Retry answers the failed message; the next message works; history alternates, one branch."""
    retry = service.retry(pk, app_id)
    assert "".join(retry) == retry.reply and retry.outcome == "answered", retry.error
    nxt = service.send(pk, "and then?")
    list(nxt)
    assert nxt.outcome == "answered" and nxt.notice is None
    messages = service.open(pk).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[0]["content"] == prompt and messages[2]["content"] == "and then?"
    assert all("status" not in m for m in messages)
    assert len(service.branches(pk)) == 1
    statuses = [s.status for s in service.snapshots(pk, app_id)]
    assert statuses.count("failed") == 1


@dataclass(frozen=True)
class Fault:
    kind: str
    inject: Callable[[FakeOpenAI], None]
    heal: Callable[[FakeOpenAI], None] = lambda server: server.reset()
    env: tuple[tuple[str, str], ...] = ()
    says: str = ""


def _slow(server: FakeOpenAI) -> None:
    server.first_byte_delay = 1.5


def _broken(server: FakeOpenAI) -> None:
    server.reply, server.break_after_chunks = LONG_REPLY, 3


def _mended(server: FakeOpenAI) -> None:
    server.break_after_chunks = None


FAULTS = {
    "timeout": Fault("timeout", _slow, env=(("BURROW_REQUEST_TIMEOUT", "0.5"),), says="too long"),
    "429-retry-after": Fault("rate_limit", lambda s: s.fail_next(429, retry_after=7), says="about 7 s"),
    "429-retry-after-ms": Fault("rate_limit", lambda s: s.fail_next(429, retry_after_ms=300), says="about 1 s"),
    "429-no-retry-after": Fault("rate_limit", lambda s: s.fail_next(429), says="Wait a moment"),
    "500": Fault("server", lambda s: s.fail_next(500), says="(500)"),
    "503": Fault("server", lambda s: s.fail_next(503), says="(503)"),
    "401-invalid-key": Fault("auth", lambda s: s.fail_next(401), says="OPENAI_API_KEY"),
    "stream-broken": Fault("stream_broken", _broken, heal=_mended, says="cut off"),
}


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
def test_model_failure_is_recorded_and_retry_continues(make_service, llm_server, fault: Fault):
    service = make_service(**dict(fault.env))
    pk, prompt = service.new_conversation_id(), "Tell me about burrows"
    fault.inject(llm_server)
    turn = service.send(pk, prompt)
    pieces = list(turn)
    assert turn.outcome == "failed" and turn.error.kind == fault.kind
    assert_readable(turn.error)
    assert fault.says in str(turn.error)
    assert_failed_step_recorded(service, pk, turn.app_id, prompt)
    fault.heal(llm_server)
    assert_continues(service, pk, turn.app_id, prompt)
    if fault.kind == "rate_limit":
        assert turn.error.retry_after == {"about 7 s": 7, "about 1 s": 0.3}.get(fault.says)
    if fault.kind == "stream_broken":  # the piece shown was real, but it is not kept as an answer
        assert pieces == ["word0", " word1", " word2"] and turn.reply == "word0 word1 word2"
        history = service.open(pk).messages
        assert history[1]["content"] == f"Echo: {prompt}" or history[1]["content"] == LONG_REPLY
        assert not any(m["content"] == turn.reply for m in history)


def test_broken_stream_keeps_no_partial_answer_after_moving_on(make_service, llm_server):
    """The user ignores Retry and types again: the cut-off reply is still not in the history."""
    service = make_service()
    pk = service.new_conversation_id()
    _broken(llm_server)
    turn = service.send(pk, "first")
    list(turn)
    assert turn.outcome == "failed" and turn.reply == "word0 word1 word2"
    _mended(llm_server)
    nxt = service.send(pk, "second")
    list(nxt)
    assert nxt.outcome == "answered"
    contents = [(m["role"], m["content"]) for m in service.open(pk).messages]
    assert contents == [("user", "first"), ("user", "second"), ("assistant", LONG_REPLY)]


def test_connection_refused_then_the_server_comes_up(make_service):
    """Nothing listens at OPENAI_BASE_URL; once a server starts there, Retry answers."""
    port = free_port()
    service = make_service(base_url=f"http://127.0.0.1:{port}/v1")
    pk, prompt = service.new_conversation_id(), "anyone there?"
    turn = service.send(pk, prompt)
    list(turn)
    assert turn.outcome == "failed" and turn.error.kind == "connection"
    assert_readable(turn.error)
    assert "OPENAI_BASE_URL" in str(turn.error)
    assert_failed_step_recorded(service, pk, turn.app_id, prompt)
    with FakeOpenAI().start(port=port):
        assert_continues(service, pk, turn.app_id, prompt)


def test_sdk_retries_hide_a_transient_failure(make_service, llm_server):
    """With BURROW_MAX_RETRIES the openai client retries a 500 itself; no failed step is saved."""
    service = make_service(BURROW_MAX_RETRIES="2")
    llm_server.fail_next(500, times=2, retry_after_ms=1)
    pk = service.new_conversation_id()
    turn = service.send(pk, "hello")
    assert "".join(turn) == "Echo: hello" and turn.outcome == "answered"
    assert len(llm_server.requests) == 3
    assert [s.status for s in service.snapshots(pk, turn.app_id)] == ["completed"] * 3


def test_failure_of_the_moderation_call_is_recorded_too(make_service, llm_server):
    """With BURROW_USE_MODERATION the safety check calls the model server; its failure is a failed step."""
    service = make_service(BURROW_USE_MODERATION="true")
    pk = service.new_conversation_id()
    llm_server.fail_next(500)
    turn = service.send(pk, "hello")
    list(turn)
    assert turn.outcome == "failed" and turn.error.kind == "server"
    assert_readable(turn.error)
    view = service.open(pk)
    assert view.messages == [{"role": "user", "content": "hello"}]
    assert view.failed_step == "safety_check"
    retry = service.retry(pk, view.app_id)
    assert "".join(retry) == "Echo: hello" and retry.outcome == "answered"
