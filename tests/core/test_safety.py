"""Safety policies: the blocked-words rule, and the provider's moderation endpoint via the real client."""
from __future__ import annotations

import pytest

from core.llm import OfflineModel, OpenAIChatModel
from core.safety import BlockedWordsPolicy, ModerationPolicy
from core.settings import Settings


@pytest.mark.parametrize("text", ["unsafe", "UNSAFE!", "this is Unsafe.", "(unsafe)", "well,unsafe,right", "not-unsafe"])
def test_default_word_blocks_whole_word_any_case(text):
    assert BlockedWordsPolicy().is_safe(text) is False


@pytest.mark.parametrize("text", ["unsafely", "safe", "unsafety", "reunsafe", "hello", "", "un safe"])
def test_default_word_does_not_block_other_words(text):
    assert BlockedWordsPolicy().is_safe(text) is True


def test_custom_words_replace_the_default():
    policy = BlockedWordsPolicy(["Evil", "drop table", "c++"])
    assert policy.is_safe("this is unsafe") is True
    assert policy.is_safe("EVIL plans") is False
    assert policy.is_safe("evildoer") is True
    assert policy.is_safe("please DROP  TABLE users") is True  # the phrase must match as written
    assert policy.is_safe("please drop table users") is False
    assert policy.is_safe("I write C++ daily") is False  # regex characters are taken literally
    assert policy.is_safe("I write c daily") is True


@pytest.mark.parametrize("words", [[], ["", ""]])
def test_empty_word_list_is_always_safe(words):
    policy = BlockedWordsPolicy(words)
    for text in ["unsafe", "", "anything at all", "UNSAFE!"]:
        assert policy.is_safe(text) is True


def test_unicode_word_boundaries():
    policy = BlockedWordsPolicy(["café"])
    assert policy.is_safe("au CAFÉ ce soir") is False
    assert policy.is_safe("cafés") is True


@pytest.fixture
def moderated_model(llm_server) -> OpenAIChatModel:
    return OpenAIChatModel(Settings(openai_base_url=llm_server.base_url, openai_api_key="sk-test", max_retries=0))


def test_moderation_policy_asks_the_endpoint(moderated_model, llm_server):
    policy = ModerationPolicy(moderated_model)
    assert policy.is_safe("hello there") is True
    assert policy.is_safe(f"graphic {llm_server.flagged_word.upper()} please") is False
    assert [r["input"] for r in llm_server.moderation_requests] == [
        "hello there", f"graphic {llm_server.flagged_word.upper()} please"]
    assert llm_server.requests == []  # moderation never asks for a completion


def test_moderation_policy_runs_the_local_rule_first(moderated_model, llm_server):
    policy = ModerationPolicy(moderated_model, first=BlockedWordsPolicy())
    assert policy.is_safe("this is unsafe") is False
    assert llm_server.moderation_requests == []  # decided locally, no network call
    assert policy.is_safe("fine") is True
    assert len(llm_server.moderation_requests) == 1


def test_moderation_failure_is_an_llm_error(moderated_model, llm_server):
    from core.llm import LLMError

    llm_server.fail_next(500)
    with pytest.raises(LLMError) as caught:
        ModerationPolicy(moderated_model).is_safe("hi")
    assert caught.value.kind == "server"


def test_offline_model_never_flags():
    assert ModerationPolicy(OfflineModel(word_delay=0)).is_safe("violence") is True


def test_chat_service_uses_moderation_when_enabled(sqlite_url, llm_server):
    from core.chat import ChatService

    settings = Settings(database_url=sqlite_url, tracker_project=None, openai_api_key="sk-test",
                        openai_base_url=llm_server.base_url, max_retries=0, use_moderation=True)
    service = ChatService.from_settings(settings)
    try:
        turn = service.send("c", f"tell me about {llm_server.flagged_word}")
        list(turn)
        assert turn.outcome == "refused"
        assert llm_server.requests == [] and len(llm_server.moderation_requests) == 1
        turn = service.send("c", "tell me about flowers")
        list(turn)
        assert turn.outcome == "answered" and len(llm_server.requests) == 1
    finally:
        service.persister.engine.dispose()


def test_chat_service_skips_moderation_offline_or_when_disabled(sqlite_url, llm_server):
    from core.chat import ChatService

    for settings in (Settings(database_url=sqlite_url, tracker_project=None, use_moderation=True),
                     Settings(database_url=sqlite_url, tracker_project=None, openai_base_url=llm_server.base_url)):
        service = ChatService.from_settings(settings)
        try:
            assert isinstance(service.policy, BlockedWordsPolicy)
        finally:
            service.persister.engine.dispose()
