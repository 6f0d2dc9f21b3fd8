"""The selected conversation lives in the URL: `?c=<partition key>&b=<branch>`; bad links never crash."""
from __future__ import annotations

from apptest_helpers import HISTORY, button, messages, ok

from core.text import is_valid_conversation_id


def test_a_malformed_id_explains_and_offers_a_new_chat(make_app):
    at = ok(make_app(c="../../etc/passwd").run())
    assert "not a valid conversation link" in at.warning[0].value
    assert not at.chat_input or messages(at) == []
    ok(button(at, "Start a new chat").click().run())
    assert is_valid_conversation_id(at.query_params["c"])
    assert not at.warning


def test_an_unknown_id_says_it_does_not_exist(make_app):
    at = ok(make_app(c="0123456789abcdef").run())
    assert "does not exist" in at.warning[0].value
    assert [b.label for b in at.button if b.label == "Start a new chat"]


def test_an_unknown_branch_offers_the_latest_one(make_app, seed):
    key = seed("branching")
    at = ok(make_app(c=key, b="no-such-branch").run())
    assert "branch" in at.warning[0].value
    ok(button(at, "Open the latest branch").click().run())
    assert at.query_params["c"] == key and "b" not in at.query_params
    assert messages(at) == [("user", "branching")]


def test_the_history_page_handles_a_bad_link_too(make_app):
    at = make_app(c="nope!")
    at.switch_page(HISTORY)
    ok(at.run())
    assert "not a valid conversation link" in at.warning[0].value


def test_the_selection_survives_moving_between_pages(app, seed):
    key = seed("carry me")
    ok(app.run())
    ok(app.sidebar.button(key=f"open_{key}").click().run())
    app.query_params.clear()  # a click on a navigation entry drops the query string in the browser
    app.switch_page(HISTORY)
    ok(app.run())
    assert app.query_params["c"] == key
    assert any("carry me" in c.value for c in app.caption)
