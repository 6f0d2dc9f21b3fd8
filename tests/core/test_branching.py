"""Edit, regenerate, versions, feedback and per-reply facts, through the ChatService facade on real databases."""
from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from core.chat import ChatService, InputError
from core.facts import FACT_KEYS, describe, facts_of
from core.llm import OfflineModel
from core.settings import Settings


@pytest.fixture
def service(db_url) -> Iterator[ChatService]:
    made = ChatService.from_settings(Settings(database_url=db_url, tracker_project=None), model=OfflineModel(0))
    yield made
    made.close()


@pytest.fixture
def remote(db_url, llm_server) -> Iterator[ChatService]:
    """The real openai client against the fake OpenAI-compatible server."""
    settings = Settings(database_url=db_url, tracker_project=None, openai_base_url=llm_server.base_url,
                        openai_api_key="sk-test", max_retries=0, request_timeout=5)
    made = ChatService.from_settings(settings)
    yield made
    made.close()


def answered(service: ChatService, pk: str, *texts: str, app_id: str | None = None) -> str:
    """Sends each text and waits for its reply; returns the branch written."""
    for text in texts:
        run = service.send(pk, text, app_id)
        assert run.wait(10) and run.outcome == "answered", (run.outcome, run.error)
        app_id = run.app_id
    return app_id


def finished(run) -> str:  # noqa: ANN001
    assert run.wait(10) and run.outcome in ("answered", "stopped"), (run.outcome, run.error)
    return run.app_id


def contents(service: ChatService, pk: str, app_id: str) -> list[str]:
    return [m["content"] for m in service.open(pk, app_id).messages]


def test_edit_forks_just_before_the_message_and_keeps_the_old_branch(service):
    original = answered(service, "c1", "first question", "second question", "third question")
    before = contents(service, "c1", original)
    edited = finished(service.edit("c1", original, 2, "second question, better"))
    assert edited != original
    assert contents(service, "c1", original) == before  # untouched
    mine = contents(service, "c1", edited)
    assert mine[:2] == before[:2] and mine[2] == "second question, better" and len(mine) == 4
    shape = service.tree("c1").get(edited)
    assert shape.parent == original and shape.inherited == 2
    # it forked from the step that ended the first turn (the reply), not from anywhere later
    first_reply_step = service.snapshots("c1", original)[2]
    assert (first_reply_step.position, shape.fork_sequence_id) == ("ai_response", first_reply_step.sequence_id)


def test_regenerate_forks_just_before_the_reply_and_asks_the_model_again(remote, llm_server):
    replies = iter(["answer one", "answer two", "answer one, again"])
    llm_server.reply = lambda messages: next(replies)
    original = answered(remote, "c2", "q1", "q2")
    again = finished(remote.regenerate("c2", original, 1))
    assert contents(remote, "c2", again) == ["q1", "answer one, again"]
    assert contents(remote, "c2", original) == ["q1", "answer one", "q2", "answer two"]
    assert remote.tree("c2").get(again).inherited == 1
    # the model saw the same history as the first time: the system prompt and q1 only
    assert [m["content"] for m in llm_server.requests[-1]["messages"][1:]] == ["q1"]


def test_versions_in_a_tree_with_several_levels(service):
    root = answered(service, "c3", "a", "b", "c")  # messages 0..5
    edit_b = finished(service.edit("c3", root, 2, "b2"))  # versions of message 2: root, edit_b
    answered(service, "c3", "c on b2", app_id=edit_b)  # edit_b: a, ra, b2, rb2, c', rc'
    edit_b_again = finished(service.edit("c3", root, 2, "b3"))
    regen_on_edit = finished(service.regenerate("c3", edit_b, 3))  # under edit_b: versions of message 3
    edit_c_on_edit = finished(service.edit("c3", edit_b, 4, "c2"))  # and of message 4
    tree = service.tree("c3")
    at_2 = tree.versions(root, 2)
    assert at_2.count == 3 and at_2.current == 0 and at_2.branches[0] == root
    assert tree.versions(edit_b_again, 2).current == 2  # the newest version is last
    assert tree.versions(root, 3) is None and tree.versions(root, 4) is None  # under root's own b: one version
    at_3 = tree.versions(edit_b, 3)
    assert at_3.count == 2 and at_3.branches == (edit_b, regen_on_edit)
    assert tree.versions(edit_b, 4).branches == (edit_b, edit_c_on_edit)
    assert tree.versions(regen_on_edit, 2).count == 3  # shares edit_b's message 2, so sees its siblings too
    assert tree.versions(regen_on_edit, 2).branches[1] == regen_on_edit  # the shown branch stands for its version
    assert set(service.open("c3", root).versions) == {2}
    assert set(service.open("c3", edit_b).versions) == {2, 3, 4}
    assert contents(service, "c3", edit_c_on_edit)[:5] == contents(service, "c3", edit_b)[:4] + ["c2"]
    assert [s.app_id for s in tree.children(root)] == [edit_b, edit_b_again]
    assert [s.app_id for s in tree.roots()] == [root]


def test_editing_the_first_message_starts_a_branch_from_nothing(service):
    root = answered(service, "c4", "hello", "more")
    fresh = finished(service.edit("c4", root, 0, "hi instead"))
    assert contents(service, "c4", fresh)[0] == "hi instead" and len(contents(service, "c4", fresh)) == 2
    assert service.tree("c4").versions(root, 0).count == 2
    assert len(contents(service, "c4", root)) == 4


def test_edit_and_regenerate_refuse_what_does_not_fit(service):
    root = answered(service, "c5", "one")
    with pytest.raises(InputError, match="not a message of yours"):
        service.edit("c5", root, 1, "x")
    with pytest.raises(InputError, match="not a reply"):
        service.regenerate("c5", root, 0)
    with pytest.raises(InputError, match="does not exist"):
        service.edit("c5", "no-such-branch", 0, "x")
    with pytest.raises(InputError, match="not a message of yours"):
        service.edit("c5", root, 7, "x")
    with pytest.raises(InputError, match="Type a message"):
        service.edit("c5", root, 0, "   ")
    assert len(service.tree("c5").shapes) == 1  # nothing was forked by a refused request


def test_feedback_is_saved_changed_shared_by_branches_and_cleared(service):
    root = answered(service, "c6", "q1", "q2")
    first = service.set_feedback("c6", root, 1, True, comment="  clear answer ")
    assert (first.thumbs_up, first.comment, first.message_index) == (True, "clear answer", 1)
    later = finished(service.edit("c6", root, 2, "q2 again"))  # shares reply 1
    assert service.open("c6", later).feedback[1].thumbs_up is True
    changed = service.set_feedback("c6", later, 1, False)
    assert changed.app_id == root and changed.created_at == first.created_at  # one rating, changed
    assert service.open("c6", root).feedback[1].thumbs_up is False
    service.set_feedback("c6", later, 3, True)
    assert 3 not in service.open("c6", root).feedback  # the other branch's reply 3 is another reply
    ratings = {(f.app_id, f.message_index): f for f in service.feedback_of_conversation("c6")}
    assert set(ratings) == {(root, 1), (later, 3)}
    annotation = ratings[(root, 1)].annotation()
    assert annotation["observations"][0]["thumbs_up_thumbs_down"] is False
    assert annotation["step_name"] == "ai_response" and annotation["app_id"] == root
    service.set_feedback("c6", root, 1, None)
    assert 1 not in service.open("c6", root).feedback
    with pytest.raises(InputError):
        service.set_feedback("c6", root, 0, True)  # a user message cannot be rated
    assert all("thumbs" not in str(m) for m in service.open("c6", root).messages)  # never in the history


def test_feedback_survives_a_restart(db_url):
    settings = Settings(database_url=db_url, tracker_project=None)
    first = ChatService.from_settings(settings, model=OfflineModel(0))
    root = answered(first, "c7", "q")
    first.set_feedback("c7", root, 1, True, comment="kept")
    first.close()
    second = ChatService.from_settings(settings, model=OfflineModel(0))
    assert second.open("c7").feedback[1].comment == "kept"
    second.close()


def test_facts_of_a_streamed_reply_with_usage(remote, llm_server):
    llm_server.reply = "four words in reply"
    answered(remote, "c8", "count these words")
    saved = remote.open("c8").messages[-1]
    assert all(type(saved[key]) is str for key in FACT_KEYS if key in saved)  # a history of strings stays fast
    facts = facts_of(saved)
    assert facts["model"] == "gpt-4o-mini" and facts["finish_reason"] == "stop"
    assert facts["tokens_out"] == 4 and facts["tokens_in"] > 3  # the fake counts words, system prompt included
    assert 0 <= facts["ttft_ms"] <= facts["total_ms"]
    assert llm_server.requests[-1]["stream_options"] == {"include_usage": True}
    assert "tokens" in describe(facts) and "complete" in describe(facts)
    assert all("ms" not in key for m in llm_server.requests[-1]["messages"] for key in m)  # not sent back


def test_usage_is_absent_not_zero_when_the_server_does_not_send_it(remote, llm_server):
    llm_server.send_usage = False
    llm_server.finish_reason = "length"
    answered(remote, "c9", "hello")
    reply = remote.open("c9").messages[-1]
    assert "tokens_in" not in reply and "tokens_out" not in reply
    assert reply["finish_reason"] == "length"


def test_a_server_that_rejects_stream_options_is_asked_again_without(remote, llm_server):
    llm_server.reject_stream_options = True
    answered(remote, "c10", "hello", "again")
    assert "stream_options" not in llm_server.requests[-1]
    assert remote.open("c10").messages[-1]["finish_reason"] == "stop"


def test_facts_of_a_stopped_and_a_failed_reply(remote, llm_server):
    llm_server.chunk_delay = 0.05
    run = remote.send("c11", "long one")
    for _ in range(100):  # until the first words arrived
        if run.text or run.wait(0.05):
            break
    assert run.text, "no words arrived before Stop"
    run.stop()
    finished(run)
    stopped = remote.open("c11").messages[-1]
    assert stopped["finish_reason"] == "stopped" and "total_ms" in stopped
    llm_server.chunk_delay = 0
    llm_server.fail_next(500)
    failed = remote.send("c11", "this one fails")
    failed.wait(10)
    view = remote.open("c11")
    assert view.failed_step == "ai_response"
    assert view.failure_facts["finish_reason"] == "error" and "total_ms" in view.failure_facts
    assert set(view.failure_facts) <= set(FACT_KEYS)


def test_the_outline_lists_branches_depth_first_with_where_they_diverge(service):
    root = answered(service, "c12", "a", "b")
    edit_a = finished(service.edit("c12", root, 0, "a, edited"))
    regen = finished(service.regenerate("c12", root, 3))
    sibling = finished(service.edit("c12", regen, 2, "b, edited"))  # message 2 is root's: forks from root
    answered(service, "c12", "c", app_id=regen)
    under_regen = finished(service.edit("c12", regen, 4, "c, edited"))  # message 4 is regen's own
    entries = service.tree_outline("c12")
    by_branch = {e.shape.app_id: e for e in entries}
    assert [e.shape.app_id for e in entries if e.depth == 0] == [root, edit_a]  # an edit of message 0 is a root
    assert by_branch[regen].depth == 1 and by_branch[under_regen].depth == 2
    assert [e.shape.app_id for e in entries].index(under_regen) == [e.shape.app_id for e in entries].index(regen) + 1
    assert by_branch[edit_a].diverges_with["content"] == "a, edited"
    assert by_branch[under_regen].diverges_with["content"] == "c, edited"
    assert (by_branch[sibling].shape.parent, by_branch[sibling].depth) == (root, 1)
    assert by_branch[sibling].diverges_with["content"] == "b, edited"
    assert by_branch[regen].diverges_with["role"] == "assistant"
    assert by_branch[root].diverges_with["content"] == "a"


def test_the_client_retrying_is_told_while_the_reply_waits(remote, llm_server, db_url):
    settings = Settings(database_url=db_url, tracker_project=None, openai_base_url=llm_server.base_url,
                        openai_api_key="sk-test", max_retries=2, request_timeout=5)
    patient = ChatService.from_settings(settings)
    try:
        llm_server.fail_next(429, times=2, retry_after_ms=10)
        run = patient.send("c13", "hello")
        assert run.wait(10) and run.outcome == "answered"
        waits = [e.data["reason"] for e in run.events() if e is not None and e.kind.value == "run.waiting"]
        assert waits == ["The model server answered 429; retrying (1 of 2)…",
                         "The model server answered 429; retrying (2 of 2)…"]
    finally:
        patient.close()
