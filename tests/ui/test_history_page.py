"""History page: the snapshot table, what changed, the highlighted graph, forking, paging, Burr's UI."""
from __future__ import annotations

from apptest_helpers import CHAT, HISTORY, button, messages, ok
from burr.core import State

from core.history import CURRENT_FILL


def _chat(at, *texts):  # noqa: ANN001, ANN202
    ok(at.run())
    for text in texts:
        ok(at.chat_input[0].set_value(text).run())
    return at


def _history(at):  # noqa: ANN001, ANN202
    at.switch_page(HISTORY)
    return ok(at.run())


def _pick(at, step):  # noqa: ANN001, ANN202
    box = next(s for s in at.selectbox if s.label == "Snapshot")
    return ok(box.set_value(step).run())


def test_the_table_lists_every_step_of_a_turn(app):
    at = _history(_chat(app, "hi"))
    assert at.title[0].value == "History"
    table = at.dataframe[0].value
    assert list(table["Action"]) == ["human_input", "safety_check", "ai_response"]
    assert list(table["Step"]) == [0, 1, 2]
    assert set(table["Status"]) == {"completed"}


def test_a_failed_step_is_marked_failed(app, llm_server):
    llm_server.fail_next(500, times=3, retry_after_ms=1)
    at = _history(_chat(app, "will fail"))
    table = at.dataframe[0].value
    assert list(table["Status"])[-1] == "failed"
    assert list(table["Action"])[-1] == "ai_response"
    assert "model server failed (500)" in list(table["Error"])[-1]  # the reason saved with the step
    assert set(table["Error"][:-1]) == {""}
    assert "This step failed: The model server failed (500)" in at.error[0].value  # the latest step is selected
    at = _pick(at, 1)
    assert not at.error


def test_selecting_a_step_shows_what_changed_and_the_state(app):
    at = _history(_chat(app, "hi"))
    texts = [m.value for m in at.markdown]  # the latest step is selected first
    assert any("appended to `chat_history`" in t for t in texts)
    assert any("Echo: hi" in t for t in texts)
    assert at.json[0].value and '"Echo: hi"' in at.json[0].proto.body
    at = _pick(at, 1)
    texts = [m.value for m in at.markdown]
    assert any("added" in t and "`safe`" in t for t in texts)
    assert not any("appended" in t for t in texts)


def test_the_graph_highlights_the_step_and_the_next_one(app):
    at = _pick(_history(_chat(app, "hi")), 1)
    spec = at.get("graphviz_chart")[0].proto.spec
    current = next(line for line in spec.splitlines() if line.strip().startswith("safety_check [") and "xlabel" in line)
    upcoming = next(line for line in spec.splitlines() if line.strip().startswith("ai_response [") and "xlabel" in line)
    assert CURRENT_FILL in current and "next" in upcoming
    assert "safe=True" in spec


def test_fork_from_here_continues_in_chat_and_keeps_the_original(app, service):
    at = _history(_chat(app, "first", "second"))
    key = at.query_params["c"]
    original = service.open(key).app_id
    ok(button(_pick(at, 2), "Fork from here").click().run())
    fork = at.query_params["b"]
    assert fork != original and at.query_params["c"] == key
    assert messages(at) == [("user", "first"), ("assistant", "Echo: first")]
    at.switch_page(CHAT)  # where the browser now is (AppTest would rerun the page it was told last)
    ok(at.chat_input[0].set_value("another way").run())
    assert messages(at)[-1] == ("assistant", "Echo: another way")
    assert at.query_params["b"] == fork
    assert len(service.open(key, original).messages) == 4  # the old branch stays intact
    at = _history(at)
    branch_box = next(s for s in at.selectbox if s.label == "Branch")
    assert branch_box.value == fork
    assert any("forked from" in option for option in branch_box.options)


def test_choosing_the_original_branch_shows_it_in_chat(app, service):
    at = _history(_chat(app, "one", "two"))
    key = at.query_params["c"]
    original = service.open(key).app_id
    ok(button(_pick(at, 2), "Fork from here").click().run())
    at = _history(at)
    ok(next(s for s in at.selectbox if s.label == "Branch").set_value(original).run())
    assert at.query_params["b"] == original
    at.switch_page(CHAT)
    ok(at.run())
    assert len(messages(at)) == 4


def test_a_long_branch_is_paged_fifty_rows_at_a_time(make_app, service, persister):
    key, app_id = service.new_conversation_id(), "long-branch"
    for seq in range(120):
        state = State({"chat_history": [{"role": "user", "content": "long"}], "__SEQUENCE_ID": seq, "n": seq})
        persister.save(key, app_id, seq, "human_input", state, "completed")
    at = make_app(c=key)
    at = _history(at)
    assert len(at.dataframe[0].value) == 50
    ok(at.number_input[0].set_value(3).run())
    assert list(at.dataframe[0].value["Step"]) == list(range(100, 120))
    assert '"n":119' in at.json[0].proto.body.replace(" ", "")  # the newest step of the page is selected


def test_burr_tracking_ui_is_linked_when_tracking_is_on(app, monkeypatch):
    at = _history(_chat(app, "tracked"))
    assert any("localhost:7241/project/burrow/" in c.value for c in at.caption)


def test_no_burr_link_when_tracking_is_off(app, monkeypatch):
    monkeypatch.setenv("BURROW_TRACKER_PROJECT", "off")
    at = _history(_chat(app, "untracked"))
    assert not any("7241" in c.value for c in at.caption)


def test_history_without_any_conversation_points_to_chat(app):
    at = _history(app)
    assert "No saved steps yet" in at.info[0].value


def test_history_opened_directly_shows_the_most_recent_conversation(make_app, seed):
    seed("older one")
    newest = seed("newest one")
    at = _history(make_app())
    assert at.query_params["c"] == newest
    assert any("newest one" in c.value for c in at.caption)


def test_new_chat_from_the_history_page_opens_the_chat_page(app, seed):
    seed("something")
    at = _history(app)
    ok(button(at, "New chat").click().run())
    assert at.chat_input and messages(at) == []
    assert not at.title  # the History title is gone: this is the Chat page
