"""History page: the snapshot table, what changed, the highlighted graph, forking, paging, Burr's UI."""
from __future__ import annotations

from apptest_helpers import CHAT, HISTORY, button, messages, ok
from burr.core import State

from core.history import CURRENT_FILL, NEXT_FILL


def _chat(at, *texts):  # noqa: ANN001, ANN202
    ok(at.run())
    for text in texts:
        ok(at.chat_input[0].set_value(text).run())
    return at


def _history(at):  # noqa: ANN001, ANN202
    at.switch_page(HISTORY)
    return ok(at.run())


def _box(at, label):  # noqa: ANN001, ANN202
    return next(s for s in at.selectbox if s.label == label)


def _pick(at, step):  # noqa: ANN001, ANN202
    return ok(_box(at, "Snapshot").set_value(step).run())


def _ticked(at):  # noqa: ANN001, ANN202
    """The steps of the table's ticked rows (its selection, as the browser shows it)."""
    app_id = _box(at, "Snapshot").key.removeprefix("history_snapshot_")
    steps = list(at.dataframe[0].value["Step"])
    table = f"history_table_{app_id}_{_box(at, 'Snapshot').value}"
    return [steps[i] for i in at.session_state[table]["selection"]["rows"]]


def _long_branch(service, persister, steps, app_id="long-branch"):  # noqa: ANN001, ANN202
    key = service.new_conversation_id()
    for seq in range(steps):
        state = State({"chat_history": [{"role": "user", "content": "long"}], "__SEQUENCE_ID": seq, "n": seq})
        persister.save(key, app_id, seq, "human_input", state, "completed")
    return key


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


def test_the_graph_marks_the_step_and_the_next_one_inside_their_nodes(app):
    at = _pick(_history(_chat(app, "hi")), 1)
    spec = at.get("graphviz_chart")[0].proto.spec
    assert "xlabel" not in spec  # a label beside a node read as an edge's
    marked = [line.strip() for line in spec.splitlines() if "fillcolor=" in line]
    current = next(line for line in marked if line.startswith("safety_check ["))
    upcoming = next(line for line in marked if line.startswith("ai_response ["))
    assert CURRENT_FILL in current and r'label="safety_check\nthis step"' in current and "penwidth=3" in current
    assert NEXT_FILL in upcoming and r'label="ai_response\nnext"' in upcoming
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


def test_a_long_branch_opens_at_its_latest_step_ticked_in_the_table(make_app, service, persister):
    key = _long_branch(service, persister, 125)
    at = _history(make_app(c=key))
    assert list(at.dataframe[0].value["Step"]) == list(range(115, 125))  # the newest page, and it is full
    assert _ticked(at) == [124] and _box(at, "Snapshot").value == 124
    assert '"n":124' in at.json[0].proto.body.replace(" ", "")
    assert any("page 13 of 13" in m.value for m in at.markdown)


def test_go_to_a_step_number_first_and_latest(make_app, service, persister):
    key = _long_branch(service, persister, 125)
    at = _history(make_app(c=key))
    ok(at.number_input(key="history_goto_long-branch").set_value(37).run())
    assert list(at.dataframe[0].value["Step"]) == list(range(35, 45))
    assert _ticked(at) == [37] and _box(at, "Snapshot").value == 37
    assert '"n":37' in at.json[0].proto.body.replace(" ", "")
    ok(at.button(key="history_first_long-branch").click().run())
    assert _ticked(at) == [0] and list(at.dataframe[0].value["Step"]) == [0, 1, 2, 3, 4]  # only the oldest page is short
    assert at.button(key="history_first_long-branch").disabled
    ok(at.button(key="history_later_long-branch").click().run())
    assert _ticked(at) == [10] and list(at.dataframe[0].value["Step"]) == list(range(5, 15))
    ok(at.button(key="history_latest_long-branch").click().run())
    assert _ticked(at) == [124] and at.number_input(key="history_goto_long-branch").value == 124


def test_the_table_and_the_snapshot_box_always_show_the_same_step(app):
    at = _history(_chat(app, "one", "two"))
    assert _ticked(at) == [5] and _box(at, "Snapshot").value == 5  # the default is ticked too
    at = _pick(at, 2)
    assert _ticked(at) == [2]
    assert at.number_input[0].value == 2


def test_the_original_branch_shows_its_own_message_count(app, service):
    at = _history(_chat(app, "one", "two", "three"))
    key = at.query_params["c"]
    original = service.open(key).app_id
    ok(button(_pick(at, 2), "Fork from here").click().run())  # the fork has 2 messages, the original 6
    at = _history(at)
    assert any("2 messages on this branch" in c.value for c in at.caption)
    ok(_box(at, "Branch").set_value(original).run())
    assert any("6 messages on this branch" in c.value for c in at.caption)


def test_burr_tracking_ui_is_linked_when_tracking_is_on(app, monkeypatch):
    at = _history(_chat(app, "tracked"))
    assert any("(http://localhost:7241/project/burrow/" in c.value for c in at.caption)


def test_the_burr_ui_link_follows_the_setting(app, monkeypatch):
    monkeypatch.setenv("BURROW_BURR_UI_URL", "https://burr.example.test/ui/")
    at = _history(_chat(app, "tracked elsewhere"))
    assert any("(https://burr.example.test/ui/project/burrow/" in c.value for c in at.caption)
    assert not any("7241" in c.value for c in at.caption)


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
