"""Import of OpenAI messages, ChatGPT's conversations.json and bad files, on real SQLite and PostgreSQL.

The sample files in tests/data/ were written for these tests."""
from __future__ import annotations

import io
import json
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.chat import ChatService, InputError
from core.llm import OfflineModel
from core.settings import Settings

DATA = Path(__file__).resolve().parent.parent / "data"
RABBITS, MOLES = "6a1f0c1e-0000-4000-8000-000000000001", "6a1f0c1e-0000-4000-8000-000000000002"


@pytest.fixture
def service(db_url) -> Iterator[ChatService]:
    made = ChatService.from_settings(Settings(database_url=db_url, tracker_project=None), model=OfflineModel(0))
    yield made
    made.close()


def steps(service: ChatService, pk: str, app_id: str | None = None) -> list[tuple[int, str, str]]:
    app_id = app_id or service.latest_branch(pk)
    return [(s.sequence_id, s.position, s.status) for s in service.snapshots(pk, app_id)]


def test_openai_messages_become_the_snapshots_of_normal_turns(service):
    (pk,) = service.import_file(DATA / "openai_messages.json")
    view = service.open(pk)
    assert view.messages == [
        {"role": "user", "content": "What is a burrow?\nAnswer in one line."},
        {"role": "assistant", "content": "A hole an animal digs to live in."},
        {"role": "user", "content": "And a warren?"},
        {"role": "assistant", "content": "Many burrows joined together, as rabbits dig them."}]  # no system message
    assert steps(service, pk) == [(0, "human_input", "completed"), (1, "safety_check", "completed"),
                                  (2, "ai_response", "completed"), (3, "human_input", "completed"),
                                  (4, "safety_check", "completed"), (5, "ai_response", "completed")]
    app_id = service.latest_branch(pk)
    state = service.snapshot(pk, app_id, 4).state
    assert (state["prompt"], state["safe"], state["__SEQUENCE_ID"], state["__PRIOR_STEP"]) == (
        "And a warren?", True, 4, "safety_check")
    assert service.conversation(pk).title == "What is a burrow? Answer in one line."
    # it goes on like any conversation: a new turn, and a fork from History
    run = service.send(pk, "thanks")
    assert run.wait(10) and run.outcome == "answered" and run.app_id == app_id
    forked = service.fork(pk, app_id, 2)
    assert [m["content"] for m in service.open(pk, forked).messages] == [m["content"] for m in view.messages[:2]]


def test_an_object_with_messages_is_an_openai_list_too(service):
    body = {"model": "x", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    (pk,) = service.import_file(io.BytesIO(json.dumps(body).encode()), "request.json")
    assert [m["content"] for m in service.open(pk).messages] == ["hi", "yo"]


def test_chatgpt_tree_becomes_branches_forked_where_they_diverge(service):
    assert service.import_file(DATA / "chatgpt_conversations.json") == [RABBITS, MOLES]
    assert service.conversation(RABBITS).title == "Rabbits"
    outline = service.tree_outline(RABBITS)
    assert [(e.depth, e.shape.inherited, e.shape.length) for e in outline] == [(0, 0, 4), (1, 1, 3)]
    first, regenerated = outline[0].shape, outline[1].shape
    assert regenerated.parent == first.app_id
    # forked as Regenerate forks: from the step holding exactly the shared user message (safety_check)
    assert steps(service, RABBITS, first.app_id)[regenerated.fork_sequence_id][1] == "safety_check"
    messages = service.open(RABBITS, first.app_id).messages
    assert [m["content"] for m in messages] == ["How deep do rabbits dig?", "About three metres.", "Why?",
                                                "To stay\ncool and safe."]  # the tool node left out
    assert messages[1]["model"] == "gpt-4o"
    # current_node (a code node, left out) is on the regenerated path: that branch is the one shown
    shown = service.open(RABBITS)
    assert shown.app_id == regenerated.app_id and shown.messages[-1]["content"] == "How many rabbits live in one?"
    assert shown.versions[1].count == 2  # "< 1/2 >" on the reply, as after a Regenerate
    assert service.open(MOLES).messages[0]["content"] == "[attachment not imported]\nWhat dug this?"


def test_taken_ids_give_new_conversations(service):
    first = service.import_file(DATA / "chatgpt_conversations.json")
    again = service.import_file(DATA / "chatgpt_conversations.json")
    assert not set(first) & set(again) and service.count_conversations() == 4
    assert [m["content"] for m in service.open(again[0]).messages] == [
        m["content"] for m in service.open(first[0]).messages]


def truncated(path: Path, keep: float = 0.6) -> io.BytesIO:
    data = path.read_bytes()
    return io.BytesIO(data[: int(len(data) * keep)])


def burrow_document(**changes) -> bytes:
    document = {"format": "burrow.conversation", "version": 1, "conversation": {"id": "x", "title": "t"},
                "feedback": [], "branches": [{"app_id": "b1", "parent": None, "fork_sequence_id": None, "snapshots": [
                    {"sequence_id": 0, "position": "human_input", "status": "completed",
                     "set": {"chat_history": [{"role": "user", "content": "hi"}]}}]}]}
    document.update(changes)
    return json.dumps(document).encode()


BAD = {
    "orphan node": (lambda: (DATA / "chatgpt_orphan.json").open("rb"),
                    "chatgpt_orphan.json: item 2: node abc has no parent in the mapping"),
    "cut-off conversations.json": (lambda: truncated(DATA / "chatgpt_conversations.json"), "not valid JSON, or cut off"),
    "cut-off messages": (lambda: truncated(DATA / "openai_messages.json"), "not valid JSON, or cut off"),
    "not JSON": (lambda: io.BytesIO(b"hello there"), "not a Burrow JSON, ChatGPT"),
    "unknown role": (lambda: io.BytesIO(b'[{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}]'),
                     "message 2: role 'robot' is not one of"),
    "newer version": (lambda: io.BytesIO(burrow_document(version=2)), "format version 2 is not one this Burrow reads"),
    "parent missing": (lambda: io.BytesIO(burrow_document(branches=[
        {"app_id": "b2", "parent": "b9", "fork_sequence_id": 0, "snapshots": [
            {"sequence_id": 0, "position": "human_input", "status": "completed", "set": {}}]}])),
        "branch b2 forked from b9, which is not in the file"),
    "base not earlier": (lambda: io.BytesIO(burrow_document(branches=[
        {"app_id": "b2", "parent": "b1", "fork_sequence_id": 0, "snapshots": [
            {"sequence_id": 0, "position": "human_input", "status": "completed", "from_parent": True}]},
        {"app_id": "b1", "parent": None, "snapshots": [
            {"sequence_id": 0, "position": "human_input", "status": "completed", "set": {}}]}])),
        "branch 1: snapshot 1 changes step 0 of branch b1, which is not earlier in the file"),
    "sequence id too large": (lambda: io.BytesIO(burrow_document(branches=[{"app_id": "b1", "snapshots": [
        {"sequence_id": 2**40, "position": "human_input", "status": "completed"}]}])),
        "snapshot 1: \"sequence_id\" must be a whole number from 0 to 2,147,483,647"),
    "content not an object": (lambda: io.BytesIO(json.dumps([{"mapping": {"n1": {"parent": None, "message": {
        "author": {"role": "user"}, "content": "just text"}}}}]).encode()),
        "item 1: node n1: message content and metadata must be objects"),
    "parent a list": (lambda: io.BytesIO(json.dumps([{"mapping": {"n1": {"parent": ["x"], "message": None}}}]).encode()),
                      "item 1: node n1: \"parent\" must be a node id or null"),
    "fork cycle": (lambda: io.BytesIO(burrow_document(branches=[
        {"app_id": name, "parent": other, "fork_sequence_id": 0, "snapshots": [
            {"sequence_id": 0, "position": "human_input", "status": "completed", "set": {}}]}
        for name, other in (("b1", "b2"), ("b2", "b1"))])), "branch b1 is forked from itself through its parents"),
    "bad status": (lambda: io.BytesIO(burrow_document(branches=[{"app_id": "b1", "snapshots": [
        {"sequence_id": 0, "position": "human_input", "status": "done"}]}])), "branch 1: snapshot 1: \"status\""),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_a_bad_file_gets_one_clear_error_and_imports_nothing(service, case):
    opener, expected = BAD[case]
    with opener() as source, pytest.raises(InputError) as caught:
        service.import_file(source, getattr(source, "name", None) and Path(source.name).name)
    assert expected in str(caught.value) and "\n" not in str(caught.value)
    assert service.count_conversations() == 0  # the good conversations before the bad part are not imported


def test_an_archive_with_one_bad_member_imports_none_of_them(service, tmp_path):
    archive = tmp_path / "mixed.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("good.json", burrow_document())
        opened.writestr("bad.json", burrow_document(version="one"))
    with pytest.raises(InputError, match="mixed.zip: bad.json: format version one"):
        service.import_file(archive)
    assert service.count_conversations() == 0


def test_a_failure_while_writing_deletes_what_the_import_wrote(service, tmp_path):
    """The second file's rating is refused by the store (comment too long) after its snapshots and the
    whole first conversation were written: all of it is deleted again."""
    rating = {"app_id": "b1", "sequence_id": 0, "message_index": 0, "thumbs_up": True, "comment": "x" * 3000}
    archive = tmp_path / "late.zip"
    with zipfile.ZipFile(archive, "w") as opened:
        opened.writestr("a.json", burrow_document(conversation={"id": "first", "title": "t"}))
        opened.writestr("b.json", burrow_document(conversation={"id": "second", "title": "t"}, feedback=[rating]))
    with pytest.raises(InputError, match="comment has 3,000 characters"):
        service.import_file(archive)
    assert service.count_conversations() == 0 and service.branch_ids("first") == service.branch_ids("second") == []


def test_a_large_conversations_json_is_read_one_conversation_at_a_time(tmp_path, sqlite_url):
    """200 conversations (~6 MB): the import's peak Python memory stays near one conversation's size."""
    conversations = []
    for n in range(200):
        mapping = {"r": {"id": "r", "message": None, "parent": None, "children": ["m0"]}}
        for i in range(20):
            mapping[f"m{i}"] = {"id": f"m{i}", "parent": "r" if i == 0 else f"m{i - 1}", "children": [f"m{i + 1}"],
                                "message": {"author": {"role": "user" if i % 2 == 0 else "assistant"},
                                            "content": {"content_type": "text", "parts": [f"{n}/{i} " + "w" * 1500]}}}
        conversations.append({"title": f"c{n}", "mapping": mapping})
    path = tmp_path / "conversations.json"
    path.write_text(json.dumps(conversations))
    del conversations
    service = ChatService.from_settings(Settings(database_url=sqlite_url, tracker_project=None, list_cache_mb=0),
                                        model=OfflineModel(0))
    try:
        tracemalloc.start()
        ids = service.import_file(path)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        service.close()
    assert len(ids) == 200
    assert peak < path.stat().st_size / 3, (peak, path.stat().st_size)
