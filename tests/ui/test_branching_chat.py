"""Chat page under AppTest: edit, regenerate, the "< 1/2 >" versions switcher, feedback and reply facts."""
from __future__ import annotations

from apptest_helpers import messages, ok


def by_key(at, kind: str, key_start: str):  # noqa: ANN001, ANN201 - AppTest widgets
    found = [w for w in getattr(at, kind) if (w.key or "").startswith(key_start)]
    assert found, f"no {kind} with a key starting {key_start!r}: {[w.key for w in getattr(at, kind)]}"
    return found


def version_label(at) -> list[str]:  # noqa: ANN001
    return [m.value for chat in at.chat_message for m in chat.markdown if "/" in m.value and len(m.value) <= 7]


def chat_with_two_turns(app) -> str:  # noqa: ANN001
    ok(app.run())
    ok(app.chat_input[0].set_value("first question").run())
    ok(app.chat_input[0].set_value("second question").run())
    return app.query_params["c"]


def test_edit_shows_the_new_version_and_the_switcher_brings_back_the_first(app, make_app, service):
    key = chat_with_two_turns(app)
    original_branch = service.open(key).app_id
    ok(by_key(app, "button", "edit_")[1].click().run())  # the second user message
    box = by_key(app, "text_area", "edit_text_")[0]
    assert box.value == "second question"
    ok(box.set_value("second question, reworded").run())
    ok(by_key(app, "button", "edit_send_")[0].click().run())
    edited_branch = app.query_params["b"]
    assert edited_branch != original_branch
    assert messages(app)[2:] == [("user", "second question, reworded"), ("assistant", "Echo: second question, reworded")]
    assert version_label(app) == ["2/2"]
    ok(by_key(app, "button", "prev_")[0].click().run())
    assert app.query_params["b"] == original_branch
    assert messages(app)[2:] == [("user", "second question"), ("assistant", "Echo: second question")]
    assert version_label(app) == ["1/2"]
    reloaded = ok(make_app(c=key, b=original_branch).run())  # a reload or a shared link: the same versions
    assert messages(reloaded) == messages(app) and version_label(reloaded) == ["1/2"]
    ok(by_key(reloaded, "button", "next_")[0].click().run())
    assert reloaded.query_params["b"] == edited_branch and version_label(reloaded) == ["2/2"]


def test_regenerate_asks_again_on_a_new_branch(app, llm_server, service):
    key = chat_with_two_turns(app)
    llm_server.reply = "a different answer"
    ok(by_key(app, "button", "regen_")[0].click().run())  # the first reply
    assert [text for _, text in messages(app)] == ["first question", "a different answer"]
    assert version_label(app) == ["2/2"]
    assert len(service.tree(key).shapes) == 2


def test_feedback_is_kept_after_a_reload_and_can_be_changed(app, make_app, service):
    key = chat_with_two_turns(app)
    thumbs = app.feedback
    assert len(thumbs) == 2  # one per reply, none on the user's messages
    ok(thumbs[0].set_value(1).run())
    assert service.open(key).feedback[1].thumbs_up is True
    reloaded = ok(make_app(c=key).run())
    assert reloaded.feedback[0].value == 1 and reloaded.feedback[1].value is None
    ok(reloaded.feedback[0].set_value(0).run())
    assert service.open(key).feedback[1].thumbs_up is False
    comment = by_key(reloaded, "text_area", "comment_")[0]
    ok(comment.set_value("too short").run())
    ok(by_key(reloaded, "button", "save_comment_")[0].click().run())
    saved = service.open(key).feedback[1]
    assert (saved.thumbs_up, saved.comment) == (False, "too short")


def test_each_reply_shows_its_facts_and_a_copy_of_its_text(app):
    chat_with_two_turns(app)
    reply = app.chat_message[1]
    line = " ".join(c.value for c in reply.caption)
    assert "gpt-4o-mini" in line and "first words" in line and "tokens" in line and "complete" in line
    assert [c.value for c in app.code][:2] == ["first question", "Echo: first question"]


def test_line_breaks_typed_with_shift_enter_are_kept(app):
    ok(app.run())
    ok(app.chat_input[0].set_value("line one\nline two").run())
    assert app.chat_message[0].markdown[0].value == "line one  \nline two"  # a hard break in Markdown


def test_a_long_chat_shows_its_latest_messages_and_earlier_ones_on_request(make_app, service):
    for turn in range(30):  # 60 messages
        run = service.send("long-chat", f"message {turn}")
        assert run.wait(10) and run.outcome == "answered"
    app = ok(make_app(c="long-chat").run())
    assert len(app.chat_message) == 50
    assert messages(app)[0] == ("user", "message 5") and messages(app)[-1] == ("assistant", "Echo: message 29")
    more = [b for b in app.button if b.key == "chat_show_earlier"]
    assert more and more[0].label == "Show 10 earlier messages"
    ok(more[0].click().run())
    assert len(app.chat_message) == 60 and messages(app)[0] == ("user", "message 0")
    assert not [b for b in app.button if b.key == "chat_show_earlier"]
    ok(by_key(app, "button", "edit_")[0].click().run())  # controls keep the real index of each message
    assert by_key(app, "text_area", "edit_text_")[0].value == "message 0"


def test_history_shows_the_tree_switches_branch_and_shows_ratings(make_app, service):
    from apptest_helpers import HISTORY

    run = service.send("tree-chat", "first")
    assert run.wait(10)
    original = run.app_id
    service.set_feedback("tree-chat", original, 1, True, comment="nice")
    edited = service.edit("tree-chat", original, 0, "first, edited")
    assert edited.wait(10) and edited.outcome == "answered"
    page = make_app(c="tree-chat", b=original)
    page.switch_page(HISTORY)
    ok(page.run())
    tree = [b for b in page.button if (b.key or "").startswith("tree_")]
    assert [b.key for b in tree] == [f"tree_{edited.app_id}"]  # the shown branch is marked, not a button
    assert "“first, edited”" in tree[0].label
    assert any("**" in m.value and "shown" in m.value for m in page.markdown)
    frame = page.dataframe[0].value
    assert "👍 nice" in list(frame["Feedback"])
    ok(tree[0].click().run())
    assert page.query_params["b"] == edited.app_id
