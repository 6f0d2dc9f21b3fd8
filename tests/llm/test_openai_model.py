"""The model client: the real `openai` SDK against the tests' fake OpenAI-compatible server, and the offline model."""
from __future__ import annotations

import socket
import threading

import pytest

from core.llm import LLMError, OfflineModel, OpenAIChatModel, build_model
from core.settings import Settings

SECRET = "sk-test-SECRET123"
HELLO = [{"role": "system", "content": "SYS"}, {"role": "user", "content": "hello"}]


def make_model(llm_server, **overrides) -> OpenAIChatModel:
    fields = dict(openai_base_url=llm_server.base_url, openai_api_key=SECRET, max_retries=0, request_timeout=10.0)
    return OpenAIChatModel(Settings(**{**fields, **overrides}))


def failure(model: OpenAIChatModel, messages=HELLO) -> LLMError:
    with pytest.raises(LLMError) as caught:
        list(model.stream(messages))
    assert SECRET not in str(caught.value)
    return caught.value


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_streams_the_reply_in_pieces(llm_server):
    llm_server.reply = "The quick brown fox"
    pieces = list(make_model(llm_server, model="fake-llama").stream(HELLO))
    assert pieces == ["The", " quick", " brown", " fox"]
    (request,) = llm_server.requests
    assert request["stream"] is True
    assert request["model"] == "fake-llama"
    assert request["messages"] == HELLO


def test_label_names_model_and_host(llm_server):
    model = make_model(llm_server, model="fake-llama")
    host = llm_server.base_url.split("//")[1].split("/")[0]
    assert model.label == f"fake-llama via {host}"
    assert model.offline is False


def test_rate_limit_with_retry_after(llm_server):
    llm_server.fail_next(429, retry_after=7)
    error = failure(make_model(llm_server))
    assert error.kind == "rate_limit"
    assert error.retry_after == pytest.approx(7)
    assert "429" in str(error) and "7 s" in str(error)


def test_rate_limit_without_retry_after(llm_server):
    llm_server.fail_next(429, retry_after=None)
    error = failure(make_model(llm_server))
    assert error.kind == "rate_limit"
    assert error.retry_after is None


def test_server_error_without_retries(llm_server):
    llm_server.fail_next(500, times=3)
    error = failure(make_model(llm_server, max_retries=0))
    assert error.kind == "server"
    assert "500" in str(error)
    assert len(llm_server.requests) == 1


def test_server_errors_then_success_with_retries(llm_server):
    llm_server.reply = "finally"
    llm_server.fail_next(500, times=2, retry_after_ms=10)  # the SDK honours retry-after-ms: no long back-off
    assert "".join(make_model(llm_server, max_retries=2).stream(HELLO)) == "finally"
    assert len(llm_server.requests) == 3


def test_retries_give_up_after_max_retries(llm_server):
    llm_server.fail_next(503, times=5, retry_after_ms=10)
    assert failure(make_model(llm_server, max_retries=1)).kind == "server"
    assert len(llm_server.requests) == 2


def test_slow_first_byte_over_the_timeout(llm_server):
    llm_server.first_byte_delay = 2.0
    error = failure(make_model(llm_server, request_timeout=0.3))
    assert error.kind == "timeout"
    assert "BURROW_REQUEST_TIMEOUT" in str(error)


def test_connection_refused():
    model = OpenAIChatModel(Settings(openai_base_url=f"http://127.0.0.1:{closed_port()}/v1", max_retries=0))
    error = failure(model)
    assert error.kind == "connection"
    assert "OPENAI_BASE_URL" in str(error)


def test_bad_key(llm_server):
    llm_server.fail_next(401)
    error = failure(make_model(llm_server))
    assert error.kind == "auth"
    assert "OPENAI_API_KEY" in str(error)


def test_unknown_model(llm_server):
    llm_server.fail_next(404)
    assert failure(make_model(llm_server)).kind == "not_found"


def test_stream_broken_mid_reply(llm_server):
    llm_server.reply = "one two three four five six"
    llm_server.break_after_chunks = 3
    received: list[str] = []
    with pytest.raises(LLMError) as caught:
        for piece in make_model(llm_server).stream(HELLO):
            received.append(piece)
    assert caught.value.kind == "stream_broken"
    assert "".join(received) != "one two three four five six"


def test_cancel_mid_stream_stops(llm_server):
    llm_server.reply = " ".join(f"w{i}" for i in range(200))
    llm_server.chunk_delay = 0.01
    cancel = threading.Event()
    received = []
    for piece in make_model(llm_server).stream(HELLO, cancel=cancel):
        received.append(piece)
        if len(received) == 3:
            cancel.set()
    assert received == ["w0", " w1", " w2"]


def test_api_key_is_sent_as_bearer_token(llm_server):
    list(make_model(llm_server).stream(HELLO))
    assert llm_server.received_headers[-1]["authorization"] == f"Bearer {SECRET}"


def test_base_url_without_key_still_works(llm_server):
    llm_server.reply = "local"
    model = OpenAIChatModel(Settings(openai_base_url=llm_server.base_url, max_retries=0))
    assert "".join(model.stream(HELLO)) == "local"


def test_moderation_flags_the_configured_word(llm_server):
    model = make_model(llm_server)
    assert model.moderate("a perfectly nice sentence") is False
    assert model.moderate(f"{llm_server.flagged_word} content") is True


def test_moderation_errors_are_translated(llm_server):
    llm_server.fail_next(401)
    with pytest.raises(LLMError) as caught:
        make_model(llm_server).moderate("hi")
    assert caught.value.kind == "auth"


# ---- offline model ---------------------------------------------------------------------------
def test_offline_model_streams_word_by_word_and_is_deterministic():
    model = OfflineModel(word_delay=0)
    messages = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "x"},
                {"role": "user", "content": "tell   me\nmore"}]
    first, second = list(model.stream(messages)), list(model.stream(messages))
    assert first == second
    assert len(first) > 10
    assert all(" " not in piece[1:] for piece in first)  # one word per piece
    assert "".join(first) == model.reply_text(messages)
    assert "Offline" in first[0] + first[1] + first[2]
    assert "reply #2" in "".join(first) and "> tell   me\n> more" in "".join(first)  # the writer's spacing kept


def test_offline_model_is_labelled_and_never_flags():
    model = OfflineModel(word_delay=0)
    assert model.offline is True and "offline" in model.label.lower()
    assert model.moderate("unsafe") is False


def test_offline_model_stops_on_cancel():
    cancel = threading.Event()
    received = []
    for piece in OfflineModel(word_delay=0).stream([{"role": "user", "content": "hi"}], cancel=cancel):
        received.append(piece)
        cancel.set()
    assert len(received) == 1


def test_offline_model_quotes_long_messages_shortened():
    text = "word " * 300
    reply = OfflineModel(word_delay=0).reply_text([{"role": "user", "content": text}])
    assert "…" in reply and len(reply) < len(text)


def test_build_model_picks_offline_without_key_or_base_url(llm_server):
    assert isinstance(build_model(Settings.load({})), OfflineModel)
    assert isinstance(build_model(Settings.load({"OPENAI_API_KEY": "sk-x"})), OpenAIChatModel)
    assert isinstance(build_model(Settings.load({"OPENAI_BASE_URL": llm_server.base_url})), OpenAIChatModel)


def test_the_history_reaches_the_server_exactly_as_given(llm_server):
    """The history bypasses the SDK's parameter walk (see OpenAIChatModel._request): the server must
    still get every message, in order, unchanged, with nothing else in its place."""
    from core.llm import OpenAIChatModel
    from core.settings import Settings

    model = OpenAIChatModel(Settings(openai_base_url=llm_server.base_url, openai_api_key="sk-x", max_retries=0))
    history = [{"role": "system", "content": "be brief"}] + [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"m{i} ünïcode\n\"quoted\""} for i in range(300)]
    assert "".join(model.stream(history)) == f"Echo: {history[-1]['content']}"
    body = llm_server.requests[-1]
    assert body["messages"] == history and body["stream"] is True and body["model"] == model.model
