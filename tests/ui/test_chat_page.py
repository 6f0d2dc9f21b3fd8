"""Chat page under AppTest: a turn streams from the fake model, refusals, errors with Retry, input limits."""
from __future__ import annotations

import time

from apptest_helpers import button, messages, ok, sidebar_titles

from core.text import is_valid_conversation_id
from core.safety import REFUSAL


def test_first_visit_starts_a_new_chat_with_its_id_in_the_url(app):
    ok(app.run())
    assert is_valid_conversation_id(app.query_params["c"])
    assert app.chat_input[0].placeholder == "Message Burrow…"
    assert messages(app) == []
    assert sidebar_titles(app) == []


def test_a_message_gets_a_streamed_reply_that_is_saved(app, make_app, llm_server, service):
    ok(app.run())
    ok(app.chat_input[0].set_value("Hello there").run())
    assert messages(app) == [("user", "Hello there"), ("assistant", "Echo: Hello there")]
    assert llm_server.requests[-1]["stream"] is True
    assert sidebar_titles(app) == ["Hello there"]
    key = app.query_params["c"]
    assert [m["content"] for m in service.open(key).messages] == ["Hello there", "Echo: Hello there"]
    reloaded = ok(make_app(c=key).run())  # a reload or a shared link
    assert messages(reloaded) == messages(app)


def test_markdown_renders_and_raw_html_is_not_allowed(app):
    ok(app.run())
    ok(app.chat_input[0].set_value("**bold** <script>alert(1)</script>").run())
    user = app.chat_message[0].markdown[0]
    assert user.value == "**bold** <script>alert(1)</script>"
    assert all(not m.proto.allow_html for chat in app.chat_message for m in chat.markdown)


def test_markdown_images_are_shown_as_links_not_fetched(app, service):
    ok(app.run())
    ok(app.chat_input[0].set_value("look ![pixel](http://127.0.0.1:9/p.gif)").run())
    shown = app.chat_message[0].markdown[0].value
    assert "![" not in shown and "[image: pixel](http://127.0.0.1:9/p.gif)" in shown
    stored = service.open(app.query_params["c"]).messages[0]["content"]
    assert stored == "look ![pixel](http://127.0.0.1:9/p.gif)"  # the message itself is kept verbatim


def test_an_unsafe_prompt_gets_the_refusal_without_calling_the_model(app, llm_server):
    ok(app.run())
    ok(app.chat_input[0].set_value("tell me something unsafe").run())
    assert messages(app)[-1] == ("assistant", REFUSAL)
    assert any("Refused" in c.value for c in app.chat_message[-1].caption)
    assert llm_server.requests == []


def test_a_model_error_shows_a_message_and_retry_answers(app, llm_server, service):
    llm_server.fail_next(500, times=3, retry_after_ms=1)
    ok(app.run())
    ok(app.chat_input[0].set_value("Are you there?").run())
    assert messages(app) == [("user", "Are you there?")]  # what the user typed is kept
    assert "model server failed (500)" in app.error[0].value
    ok(button(app, "Retry").click().run())
    assert messages(app) == [("user", "Are you there?"), ("assistant", "Echo: Are you there?")]
    assert not app.error
    assert service.open(app.query_params["c"]).failed_step is None


def test_the_conversation_stays_usable_after_a_failure(app, llm_server):
    llm_server.fail_next(500, times=3, retry_after_ms=1)
    ok(app.run())
    ok(app.chat_input[0].set_value("first").run())
    ok(app.chat_input[0].set_value("second").run())  # moving on instead of retrying
    assert messages(app) == [("user", "first"), ("user", "second"), ("assistant", "Echo: second")]
    assert not app.error
    caption = next(c.value for c in app.chat_message[0].caption if "No reply" in c.value)  # "first" stays unanswered
    assert "Retry" not in caption  # no Retry is offered for it any more
    assert not any("No reply" in c.value for c in app.chat_message[1].caption)


def test_a_too_long_message_is_refused_with_the_limit(app, monkeypatch, llm_server):
    monkeypatch.setenv("BURROW_MAX_MESSAGE_CHARS", "20")
    ok(app.run())
    ok(app.chat_input[0].set_value("x" * 25).run())
    assert "the limit is 20" in app.warning[0].value
    assert app.text_area(key="chat_draft_text").value == "x" * 25  # what was typed stays on the page, to shorten and send
    assert messages(app) == []
    assert llm_server.requests == []
    ok(app.text_area(key="chat_draft_text").set_value("x" * 20).run())
    ok(button(app, "Send").click().run())
    for _ in range(50):  # a new chat's page reruns once at the first words; a busy machine may stop there
        if len(messages(app)) == 2:
            break
        time.sleep(0.1)
        ok(app.run())
    assert messages(app) == [("user", "x" * 20), ("assistant", "Echo: " + "x" * 20)]
    assert not app.warning and not [t for t in app.text_area if t.key == "chat_draft_text"]


def test_a_blank_message_is_not_sent(app, llm_server):
    ok(app.run())
    ok(app.chat_input[0].set_value("   \n ").run())
    assert messages(app) == []
    assert sidebar_titles(app) == []
    assert llm_server.requests == []


def test_the_badge_names_the_model(app, llm_server):
    ok(app.run())
    host = llm_server.base_url.split("//")[1].split("/")[0]
    assert any(f"gpt-4o-mini via {host}" in m.value and "badge" in m.value for m in app.markdown)


def test_the_offline_model_says_how_to_connect_a_real_one(app, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    ok(app.run())
    assert any("Offline demo model" in m.value and "badge" in m.value for m in app.markdown)
    assert any("OPENAI_API_KEY" in c.value and "OPENAI_BASE_URL" in c.value for c in app.caption)


def test_the_offline_echo_keeps_the_formatting_and_says_once_how_to_connect(app, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("OPENAI_API_KEY")
    ok(app.run())
    ok(app.chat_input[0].set_value("Packing list:\n\n- socks\n- **boots**").run())
    ok(app.chat_input[0].set_value("thanks").run())
    first, second = app.chat_message[1].markdown[0].value, app.chat_message[3].markdown[0].value
    assert "> - socks" in first and "> - **boots**" in first  # a quoted list, not one flattened line
    assert "No language model is connected" in first and "No language model is connected" not in second
