"""diff_states / next_action / highlighted_graph: the logic behind the History page."""
from core.history import CURRENT_FILL, appended_items, diff_states, highlighted_graph, next_action

USER = {"role": "user", "content": "hi"}
BOT = {"role": "assistant", "content": "hello"}


def test_first_snapshot_adds_every_key_but_internal_ones():
    diff = diff_states(None, {"__SEQUENCE_ID": 0, "prompt": "hi", "chat_history": [USER]})
    assert diff.added == {"prompt": "hi", "chat_history": [USER]}
    assert not diff.changed and not diff.removed and not diff.appended


def test_internal_keys_can_be_included():
    diff = diff_states({"__SEQUENCE_ID": 0}, {"__SEQUENCE_ID": 1}, include_internal=True)
    assert diff.changed == {"__SEQUENCE_ID": (0, 1)}


def test_grown_list_is_reported_as_appended_messages():
    before = {"chat_history": [USER], "prompt": "hi"}
    after = {"chat_history": [USER, BOT], "prompt": "hi", "response": "hello"}
    diff = diff_states(before, after)
    assert diff.appended == {"chat_history": [BOT]}
    assert diff.added == {"response": "hello"}
    assert not diff.changed


def test_changed_and_removed_keys():
    diff = diff_states({"safe": True, "prompt": "a", "gone": 1}, {"safe": False, "prompt": "a"})
    assert diff.changed == {"safe": (True, False)}
    assert diff.removed == {"gone": 1}
    assert not diff.empty


def test_rewritten_list_is_a_change_not_an_append():
    diff = diff_states({"chat_history": [USER, BOT]}, {"chat_history": [BOT, USER, BOT]})
    assert diff.changed == {"chat_history": ([USER, BOT], [BOT, USER, BOT])}
    assert appended_items([USER, BOT], [USER]) is None


def test_identical_states_have_an_empty_diff():
    state = {"__SEQUENCE_ID": 3, "chat_history": [USER]}
    assert diff_states(state, dict(state)).empty


def test_next_action_follows_the_graph_and_its_conditions():
    assert next_action("human_input", "completed", {"prompt": "hi"}) == "safety_check"
    assert next_action("safety_check", "completed", {"safe": True}) == "ai_response"
    assert next_action("safety_check", "completed", {"safe": False}) == "unsafe_response"
    assert next_action("ai_response", "completed", {}) == "human_input"
    assert next_action(None, "completed", {}) == "human_input"


def test_a_failed_step_runs_again_next():
    assert next_action("ai_response", "failed", {"safe": True}) == "ai_response"


def test_graph_marks_current_and_next_step_and_shows_conditions():
    source = highlighted_graph("safety_check", "ai_response").source
    assert "safe=True" in source and "safe=False" in source
    current = [line for line in source.splitlines() if line.strip().startswith("safety_check [") and "xlabel" in line]
    upcoming = [line for line in source.splitlines() if line.strip().startswith("ai_response [") and "xlabel" in line]
    assert current and CURRENT_FILL in current[0]
    assert upcoming and "next" in upcoming[0]
