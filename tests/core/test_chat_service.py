"""ChatService end to end: real SQLite file, the offline model or the real openai client on the fake server."""
from __future__ import annotations

import pytest

from core.facts import without_facts
from core.actions import REFUSED, STOPPED
from core.chat import ChatService, InputError, clean_message
from core.llm import LLMError, OfflineModel, OpenAIChatModel
from core.safety import REFUSAL
from core.settings import Settings


@pytest.fixture
def make_service(sqlite_url):
    """A ChatService on the test's SQLite file; tracking off unless asked for."""
    made: list[ChatService] = []

    def make(model=None, **fields) -> ChatService:
        settings = Settings(**{"database_url": sqlite_url, "tracker_project": None, **fields})
        service = ChatService.from_settings(settings, model=model or OfflineModel(word_delay=0))
        made.append(service)
        return service

    yield make
    for service in made:
        service.close()


@pytest.fixture
def service(make_service) -> ChatService:
    return make_service()


@pytest.fixture
def remote_service(make_service, llm_server) -> ChatService:
    """Talks to the fake server through the real openai client, with no retries."""
    settings = Settings(openai_base_url=llm_server.base_url, openai_api_key="sk-test", max_retries=0)
    return make_service(OpenAIChatModel(settings))


def roles(view) -> list[str]:
    return [m["role"] for m in view.messages]



def test_the_list_cache_budget_comes_from_settings_and_a_turn_fills_it(make_service):
    off, default = make_service(list_cache_mb=0), make_service()
    assert off.persister.list_cache.max_bytes == 0 and default.persister.list_cache.max_bytes == 64 * 2**20
    for service in (off, default):
        key = service.new_conversation_id()
        for text in ("hello there", "and again"):  # the second turn loads what the first saved
            turn = service.send(key, text)
            list(turn)
            assert turn.outcome == "answered"
        assert len(service.open(key).messages) == 4
    assert off.persister.list_cache.size == 0 < default.persister.list_cache.size


def test_offline_turn_is_labelled_and_deterministic(service):
    first, second = service.new_conversation_id(), service.new_conversation_id()
    assert first != second
    turn = service.send(first, "Hello there")
    pieces = list(turn)
    assert turn.outcome == "answered" and turn.error is None and turn.notice is None
    assert len(pieces) > 5 and "".join(pieces) == turn.reply
    assert "Offline demo model" in turn.reply and "Hello there" in turn.reply
    other = service.send(second, "Hello there")
    assert "".join(other) == turn.reply
    view = service.open(first)
    assert [without_facts(m) for m in view.messages] == [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": turn.reply}]
    assert view.app_id == turn.app_id and view.sequence_id == 2
    assert view.failed_step is None and view.pending_step is None


def test_open_unknown_conversation_is_empty(service):
    view = service.open("never-written")
    assert [without_facts(m) for m in view.messages] == [] and view.app_id is None and view.sequence_id is None


def test_user_message_is_persisted_before_the_model_is_called(remote_service, llm_server):
    pk = remote_service.new_conversation_id()
    seen_by_model_time: list[list[dict]] = []

    def reply(_messages):
        seen_by_model_time.append(remote_service.open(pk).messages)  # read the database mid-request
        return "ok"

    llm_server.reply = reply
    assert "".join(remote_service.send(pk, "persist me first")) == "ok"
    assert seen_by_model_time == [[{"role": "user", "content": "persist me first"}]]


def test_failed_turn_keeps_the_user_message_and_can_be_retried(remote_service, llm_server):
    pk = remote_service.new_conversation_id()
    llm_server.fail_next(500)
    turn = remote_service.send(pk, "will fail")
    assert list(turn) == []
    assert turn.outcome == "failed"
    assert isinstance(turn.error, LLMError) and turn.error.kind == "server"

    view = remote_service.open(pk)
    assert [without_facts(m) for m in view.messages] == [{"role": "user", "content": "will fail"}]
    assert view.failed_step == "ai_response" and view.pending_step == "ai_response"
    assert remote_service.persister.load(pk, None)["status"] == "failed"

    llm_server.reply = "second time lucky"
    retry = remote_service.retry(pk, view.app_id)
    assert "".join(retry) == "second time lucky"
    assert retry.outcome == "answered"
    view = remote_service.open(pk)
    assert without_facts(view.messages[-1]) == {"role": "assistant", "content": "second time lucky"}
    assert view.failed_step is None

    llm_server.reply = lambda messages: f"seen {len(messages)}"
    assert "".join(remote_service.send(pk, "and on")) == "seen 4"  # system + user, assistant, user
    assert roles(remote_service.open(pk)) == ["user", "assistant", "user", "assistant"]


def test_retry_with_nothing_to_retry_changes_nothing(service):
    pk = service.new_conversation_id()
    list(service.send(pk, "hi"))
    before = service.open(pk)
    for target in (pk, service.new_conversation_id()):  # answered already; never written
        turn = service.retry(target, None)
        assert list(turn) == []
        assert turn.outcome == "nothing_to_retry" and turn.error is None and turn.notice
    after = service.open(pk)
    assert (after.sequence_id, after.messages) == (before.sequence_id, before.messages)


def test_sending_after_a_failure_moves_on_without_retrying(remote_service, llm_server):
    pk = remote_service.new_conversation_id()
    llm_server.fail_next(500)
    list(remote_service.send(pk, "first"))
    llm_server.reply = "answer"
    turn = remote_service.send(pk, "second")
    assert "".join(turn) == "answer"
    assert roles(remote_service.open(pk)) == ["user", "user", "assistant"]


def test_refused_turn(service):
    pk = service.new_conversation_id()
    turn = service.send(pk, "this is UNSAFE")
    assert "".join(turn) == REFUSAL
    assert turn.outcome == "refused"
    assert service.open(pk).messages[-1]["status"] == REFUSED


def test_stop_mid_stream_keeps_the_partial_reply(make_service):
    service = make_service(OfflineModel(word_delay=0.02))  # slow enough to stop midway
    pk = service.new_conversation_id()
    turn = service.send(pk, "long answer please")
    received = []
    for piece in turn:
        received.append(piece)
        if len(received) == 3:
            turn.stop()
    assert 3 <= len(received) < 10  # a piece may have been on its way when Stop came
    assert turn.outcome == "stopped"
    last = service.open(pk).messages[-1]
    assert without_facts(last) == {"role": "assistant", "content": "".join(received), "status": STOPPED}
    assert service.open(pk).failed_step is None


def test_leaving_early_only_detaches_the_reply_goes_on(make_service):
    """A client that stops reading (a Streamlit rerun, a closed tab) does not stop the run."""
    service = make_service(OfflineModel(word_delay=0.01))
    pk = service.new_conversation_id()
    turn = service.send(pk, "I will leave early")
    gen = iter(turn)
    first = next(gen)
    gen.close()
    assert turn.wait(10) and turn.outcome == "answered"
    view = service.open(pk)
    assert view.failed_step is None and "status" not in view.messages[-1]
    assert view.messages[-1]["content"].startswith(first)
    assert view.messages[-1]["content"] == OfflineModel().reply_text(view.messages[:-1])
    assert "".join(turn) == view.messages[-1]["content"]  # attaching again replays the whole reply

    again = service.send(pk, "still here?")  # the conversation goes on, and is not locked
    assert "".join(again) and again.outcome == "answered"
    assert roles(service.open(pk)) == ["user", "assistant", "user", "assistant"]


def test_stop_against_the_remote_model(remote_service, llm_server):
    llm_server.reply = " ".join(f"w{i}" for i in range(100))
    llm_server.chunk_delay = 0.01
    pk = remote_service.new_conversation_id()
    turn = remote_service.send(pk, "go")
    received = []
    for piece in turn:
        received.append(piece)
        if len(received) == 2:
            turn.stop()
    assert turn.outcome == "stopped"
    assert without_facts(remote_service.open(pk).messages[-1]) == {"role": "assistant", "content": "w0 w1", "status": STOPPED}


@pytest.mark.parametrize("text", ["", "   ", "\n\t \r\n", None, "\x00\x07\x1b"])
def test_clean_message_rejects_blank(text):
    with pytest.raises(InputError, match="empty"):
        clean_message(text, 100)


def test_clean_message_limits_length():
    assert clean_message("x" * 100, 100) == "x" * 100
    with pytest.raises(InputError, match="101"):
        clean_message("x" * 101, 100)


def test_clean_message_drops_control_characters_but_keeps_layout():
    assert clean_message("  a\x00b\x07c\x1b[0m\x7f  ", 100) == "abc[0m"
    assert clean_message("line one\nline two\r\n\tindented", 100) == "line one\nline two\r\n\tindented"


def test_clean_message_repairs_lone_surrogates():
    cleaned = clean_message("bad \ud800 half", 100)
    cleaned.encode("utf-8")  # must not raise
    assert cleaned.startswith("bad ") and cleaned.endswith(" half")
    assert clean_message("emoji 🦫 ok", 100) == "emoji 🦫 ok"


def test_send_rejects_invalid_input_and_stores_nothing(make_service):
    service = make_service(max_message_chars=10)
    with pytest.raises(InputError):
        service.send("c1", "   ")
    with pytest.raises(InputError):
        service.send("c1", "x" * 11)
    assert service.open("c1").messages == []
    assert service.count_conversations() == 0


def test_fork_starts_a_branch_equal_to_the_source_snapshot(service):
    pk = service.new_conversation_id()
    list(service.send(pk, "first question"))
    list(service.send(pk, "second question"))
    original = service.open(pk)
    assert original.sequence_id == 5

    new_id = service.fork(pk, original.app_id, 2)
    assert new_id != original.app_id
    assert service.persister.load_serialized(pk, new_id) == service.persister.load_serialized(pk, original.app_id, 2)
    view = service.open(pk)  # the fork is now the most recent branch
    assert view.app_id == new_id and roles(view) == ["user", "assistant"]

    list(service.send(pk, "a different second question"))  # app_id=None: continues the fork
    forked = service.open(pk, new_id)
    assert [m["content"] for m in forked.messages if m["role"] == "user"] == ["first question", "a different second question"]
    assert service.open(pk, original.app_id).messages == original.messages
    branches = service.branches(pk)
    assert [b.app_id for b in branches] == [new_id, original.app_id]
    assert (branches[0].forked_from_app_id, branches[0].forked_from_sequence_id) == (original.app_id, 2)


def test_fork_from_inside_a_turn_can_be_finished(service):
    pk = service.new_conversation_id()
    list(service.send(pk, "question"))
    source = service.open(pk)
    new_id = service.fork(pk, source.app_id, 0)  # right after human_input
    view = service.open(pk, new_id)
    assert view.pending_step == "safety_check" and view.failed_step is None
    assert roles(view) == ["user"]
    turn = service.retry(pk, new_id)
    assert "".join(turn) and turn.outcome == "answered"
    assert roles(service.open(pk, new_id)) == ["user", "assistant"]


def test_fork_of_a_missing_step_raises(service):
    from core.errors import StorageError

    pk = service.new_conversation_id()
    list(service.send(pk, "q"))
    with pytest.raises(StorageError):
        service.fork(pk, service.open(pk).app_id, 99)


def test_resuming_picks_the_most_recent_branch(service):
    pk = service.new_conversation_id()
    list(service.send(pk, "one"))
    old = service.open(pk).app_id
    new = service.fork(pk, old, 2)
    assert service.open(pk).app_id == new
    list(service.send(pk, "on the old branch", app_id=old))
    assert service.open(pk).app_id == old  # writing to it made it the most recent again
    list(service.send(pk, "no branch given"))
    assert [m["content"] for m in service.open(pk, old).messages if m["role"] == "user"] == [
        "one", "on the old branch", "no branch given"]
    assert roles(service.open(pk, new)) == ["user", "assistant"]


def test_a_second_service_sees_the_conversation_and_reports_new_messages(make_service):
    tab_a, tab_b = make_service(), make_service()  # two processes on one database
    pk = tab_a.new_conversation_id()
    list(tab_a.send(pk, "from a"))
    seen_by_a = len(tab_a.open(pk).messages)
    list(tab_b.send(pk, "from b"))
    turn = tab_a.send(pk, "from a again", expected_messages=seen_by_a)
    assert "".join(turn)
    assert turn.notice is not None
    assert [m["content"] for m in tab_a.open(pk).messages if m["role"] == "user"] == ["from a", "from b", "from a again"]


def test_conversation_catalog_follows_turns(service):
    pk = service.new_conversation_id()
    list(service.send(pk, "What is a burrow?"))
    summary = service.conversation(pk)
    assert summary.title == "What is a burrow?"
    assert summary.message_count == 2
    assert summary.latest_app_id == service.open(pk).app_id


def test_reply_cut_off_mid_stream_fails_the_turn_and_keeps_no_partial(remote_service, llm_server):
    llm_server.reply = "one two three four five"
    llm_server.break_after_chunks = 2
    pk = remote_service.new_conversation_id()
    turn = remote_service.send(pk, "go")
    received = list(turn)
    assert received == ["one", " two"]
    assert turn.outcome == "failed" and turn.error.kind == "stream_broken"
    view = remote_service.open(pk)
    assert [without_facts(m) for m in view.messages] == [{"role": "user", "content": "go"}] and view.failed_step == "ai_response"
    llm_server.break_after_chunks = None
    retry = remote_service.retry(pk, view.app_id)
    assert "".join(retry) == "one two three four five" and retry.outcome == "answered"


def test_moderation_failure_fails_at_safety_check_and_retry_finishes(make_service, llm_server):
    settings = Settings(openai_base_url=llm_server.base_url, openai_api_key="sk-test", max_retries=0)
    service = make_service(OpenAIChatModel(settings), use_moderation=True, openai_api_key="sk-test",
                           openai_base_url=llm_server.base_url)
    llm_server.fail_next(503)  # taken by the moderation call
    pk = service.new_conversation_id()
    turn = service.send(pk, "hello")
    assert list(turn) == [] and turn.outcome == "failed" and turn.error.kind == "server"
    view = service.open(pk)
    assert view.failed_step == "safety_check" and roles(view) == ["user"]
    assert llm_server.requests == []  # the model was never asked
    llm_server.reply = "moderated hello"
    retry = service.retry(pk, view.app_id)
    assert "".join(retry) == "moderated hello" and retry.outcome == "answered"
    assert roles(service.open(pk)) == ["user", "assistant"]
    assert len(llm_server.moderation_requests) == 2


def test_timeout_fails_the_turn_with_a_message_to_act_on(make_service, llm_server):
    settings = Settings(openai_base_url=llm_server.base_url, openai_api_key="sk-test", max_retries=0,
                        request_timeout=0.3)
    service = make_service(OpenAIChatModel(settings))
    llm_server.first_byte_delay = 1.5
    turn = service.send("slow", "anyone there?")
    assert list(turn) == []
    assert turn.outcome == "failed" and turn.error.kind == "timeout"
    assert service.open("slow").messages == [{"role": "user", "content": "anyone there?"}]


def test_two_threads_sending_to_one_conversation_take_turns(remote_service, llm_server):
    import threading

    llm_server.chunk_delay = 0.005
    pk = remote_service.new_conversation_id()
    outcomes: list[str | None] = []

    def send(text: str) -> None:
        turn = remote_service.send(pk, text)
        list(turn)
        outcomes.append(turn.outcome)

    threads = [threading.Thread(target=send, args=(f"message {i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == ["answered", "answered"]
    messages = remote_service.open(pk).messages
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    for question, answer in (messages[0:2], messages[2:4]):
        assert answer["content"] == f"Echo: {question['content']}"  # each reply follows its own question


def test_the_offline_echo_keeps_formatting_and_gives_its_notice_once(service):
    text = "Plan:\n\n- pack\n- **go**\n\n```\ncode  stays\n```"
    first = service.send("fmt", text)
    assert first.wait(10) and first.outcome == "answered"
    second = service.send("fmt", "and again")
    assert second.wait(10)
    replies = [m["content"] for m in service.open("fmt").messages if m["role"] == "assistant"]
    assert "> - pack\n> - **go**" in replies[0] and "> code  stays" in replies[0]  # lines and spaces kept
    assert "No language model is connected" in replies[0]
    assert "No language model is connected" not in replies[1] and "> and again" in replies[1]
