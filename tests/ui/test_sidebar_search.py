"""Sidebar search in message text: hits with an escaped snippet (matches in bold), a click opens the
conversation at the hit's branch with its message index in the URL; titles still match."""
from __future__ import annotations

from apptest_helpers import ok, sidebar_titles


def _hit_buttons(at):  # noqa: ANN001, ANN202
    return [b for b in at.sidebar.button if (b.key or "").startswith("sidebar_hit_")]


def test_typing_finds_a_message_and_clicking_opens_it(app, seed):
    key = seed("tell me about **<b>capybaras</b>**")
    seed("something else")
    ok(app.run())
    ok(app.sidebar.text_input(key="sidebar_search").set_value("capyb").run())
    [hit] = _hit_buttons(app)
    assert "**capybaras**" in hit.label and "<b>" not in hit.label.replace("\\<b\\>", "")
    ok(hit.click().run())
    assert app.query_params["c"] == key and app.query_params["m"] == "0"


def test_odd_input_shows_no_error(app, seed):
    seed("plain words")
    ok(app.run())
    for query in ['"', "(((", "NEAR(", "*", "-", "🙂"]:
        ok(app.sidebar.text_input(key="sidebar_search").set_value(query).run())
        assert not app.exception


def test_title_search_still_lists_conversations_without_message_hits(app, seed, service):
    key = seed("hello")
    service.rename(key, "Budget review")
    ok(app.run())
    ok(app.sidebar.text_input(key="sidebar_search").set_value("budget").run())
    assert _hit_buttons(app) == [] and sidebar_titles(app) == ["Budget review"]
