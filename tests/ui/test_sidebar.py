"""The conversation sidebar: new chat, switching, rename, delete (with confirmation), search, paging."""
from __future__ import annotations

from apptest_helpers import button, messages, ok, sidebar_titles


def _open_button(at, key):  # noqa: ANN001, ANN202
    return at.sidebar.button(key=f"open_{key}")


def test_new_chat_starts_an_empty_conversation_and_keeps_the_old_one(app):
    ok(app.run())
    ok(app.chat_input[0].set_value("first chat").run())
    first = app.query_params["c"]
    ok(button(app, "New chat").click().run())
    assert app.query_params["c"] != first
    assert messages(app) == []
    assert sidebar_titles(app) == ["first chat"]


def test_list_is_newest_first_and_clicking_switches(app, seed):
    older, newer = seed("older talk"), seed("newer talk")
    ok(app.run())
    assert sidebar_titles(app) == ["newer talk", "older talk"]
    ok(_open_button(app, older).click().run())
    assert app.query_params["c"] == older
    assert messages(app) == [("user", "older talk")]
    assert _open_button(app, older).proto.type == "secondary"  # the current one stands out
    assert _open_button(app, newer).proto.type == "tertiary"


def test_rename_changes_the_title_everywhere(app, seed, service):
    key = seed("draft title")
    ok(app.run())
    ok(app.sidebar.button(key=f"rename_{key}").click().run())
    ok(app.text_input(key=f"rename_input_{key}").set_value("Trip to Lisbon").run())
    ok(app.button(key="rename_save").click().run())
    assert sidebar_titles(app) == ["Trip to Lisbon"]
    assert service.conversation(key).title == "Trip to Lisbon"


def test_delete_asks_first_and_cancel_keeps_it(app, seed, service):
    key = seed("keep me")
    ok(app.run())
    ok(app.sidebar.button(key=f"delete_{key}").click().run())
    assert any("cannot be undone" in m.value for m in app.markdown)
    ok(button(app, "Cancel").click().run())
    assert service.conversation(key) is not None
    assert not any("cannot be undone" in m.value for m in app.markdown)


def test_deleting_the_open_conversation_removes_it_and_starts_a_new_chat(make_app, seed, service, persister):
    key, other = seed("delete me"), seed("other")
    at = ok(make_app(c=key).run())
    ok(at.sidebar.button(key=f"delete_{key}").click().run())
    ok(at.button(key="delete_confirm").click().run())
    assert service.conversation(key) is None
    assert persister.load(key, None) is None
    assert sidebar_titles(at) == ["other"]
    assert at.query_params["c"] not in (key, other)
    assert messages(at) == []


def test_search_filters_by_title(app, seed):
    seed("apple pie recipe")
    seed("banana bread")
    ok(app.run())
    ok(app.text_input(key="sidebar_search").set_value("BANANA").run())
    assert sidebar_titles(app) == ["banana bread"]
    ok(app.text_input(key="sidebar_search").set_value("cherry").run())
    assert sidebar_titles(app) == []
    assert any("No conversation title matches" in c.value for c in app.sidebar.caption)


def test_show_more_pages_through_the_list(app, seed):
    for number in range(23):
        seed(f"chat {number:02d}")
    ok(app.run())
    titles = sidebar_titles(app)
    assert len(titles) == 20 and titles[0] == "chat 22"
    ok(button(app, "Show more").click().run())
    assert sidebar_titles(app) == [f"chat {n:02d}" for n in range(22, -1, -1)]
    assert not [b for b in app.button if b.label == "Show more"]


def _close_scripts(at) -> list[str]:  # noqa: ANN001
    return [h.proto.body for h in at.get("html") if "stSidebarCollapseButton" in h.proto.body]


def test_choosing_a_conversation_closes_the_sidebar_once_on_narrow_screens(app, seed):
    older, newer = seed("older talk"), seed("newer talk")
    ok(app.run())
    assert _close_scripts(app) == []  # opening the app is no choice
    ok(_open_button(app, older).click().run())
    scripts = _close_scripts(app)
    assert len(scripts) == 1 and "max-width: 768px" in scripts[0]  # only where the sidebar covers the page
    assert all(h.proto.unsafe_allow_javascript for h in app.get("html") if "stSidebarCollapseButton" in h.proto.body)
    ok(app.run())
    assert _close_scripts(app) == []  # a rerun without a choice leaves the sidebar alone
    ok(_open_button(app, newer).click().run())
    ok(button(app, "New chat").click().run())
    assert len(_close_scripts(app)) == 1 and _close_scripts(app) != scripts  # each choice gets a new script


def test_deleting_a_conversation_removes_its_burr_tracker_files(app, app_env):
    ok(app.run())
    ok(app.chat_input[0].set_value("tracked, then deleted").run())
    key = app.query_params["c"]
    runs = app_env / "burr" / "burrow"
    tracked = [folder for folder in runs.iterdir() if folder.is_dir()]
    assert len(tracked) == 1  # the conversation's one branch
    ok(app.sidebar.button(key=f"delete_{key}").click().run())
    ok(app.button(key="delete_confirm").click().run())
    assert not tracked[0].exists()


def test_pin_puts_a_conversation_first_with_a_mark_and_unpin_takes_both_away(app, seed, service):
    older, newer = seed("older talk"), seed("newer talk")
    ok(app.run())
    assert app.sidebar.button(key=f"pin_{older}").label == "Pin"
    ok(app.sidebar.button(key=f"pin_{older}").click().run())
    assert service.conversation(older).pinned
    assert sidebar_titles(app) == [":material/push_pin: older talk", "newer talk"]  # first, with the pin mark
    assert app.sidebar.button(key=f"pin_{older}").label == "Unpin"
    ok(app.sidebar.button(key=f"pin_{older}").click().run())
    assert not service.conversation(older).pinned
    assert sidebar_titles(app) == ["newer talk", "older talk"]
    assert ":material/push_pin:" not in _open_button(app, older).label
