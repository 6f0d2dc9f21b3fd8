"""Export of conversations (Burrow JSON, Markdown, OpenAI messages, .zip archives) and the exact
round trip through import, on real SQLite files and a real PostgreSQL server."""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.chat import ChatService, InputError
from core.llm import OfflineModel
from core.settings import Settings


def make_service(url: str, **extra) -> ChatService:
    settings = Settings(database_url=url, tracker_project=None, **extra)
    return ChatService.from_settings(settings, model=None if settings.openai_base_url else OfflineModel(0))


@pytest.fixture
def service(db_url) -> Iterator[ChatService]:
    made = make_service(db_url)
    yield made
    made.close()


@pytest.fixture
def source(tmp_path) -> Iterator[ChatService]:
    """A second database (a SQLite file of its own) to export from."""
    made = make_service(f"sqlite:///{tmp_path}/source.db")
    yield made
    made.close()


def answered(service: ChatService, pk: str, *texts: str, app_id: str | None = None) -> str:
    for text in texts:
        run = service.send(pk, text, app_id)
        assert run.wait(10) and run.outcome in ("answered", "refused"), (run.outcome, run.error)
        app_id = run.app_id
    return app_id


def branched(service: ChatService, pk: str = "c1") -> str:
    """A conversation with an edit, a regenerate, a fork from History, a refusal and a rating."""
    root = answered(service, pk, "first\nline two", "second", "unsafe words here", "third")
    edit = service.edit(pk, root, 2, "second, edited")
    assert edit.wait(10)
    answered(service, pk, "more on the edit", app_id=edit.app_id)
    again = service.regenerate(pk, root, 1)
    assert again.wait(10)
    service.fork(pk, root, 4)
    service.set_feedback(pk, root, 1, True, "good", ("kept",))
    service.set_feedback(pk, edit.app_id, 5, False)
    return root


def exported(service: ChatService, pk: str) -> bytes:
    out = io.StringIO()
    service.export_json(pk, out)
    return out.getvalue().encode()


def every_snapshot(service: ChatService, pk: str, app_id: str) -> list[tuple]:
    return [(s.sequence_id, s.position, s.status, service.persister.load(pk, app_id, s.sequence_id)["state"].get_all())
            for s in service.snapshots(pk, app_id, limit=10_000)]


def test_round_trip_into_a_fresh_database_keeps_every_snapshot_id_and_rating(source, service):
    branched(source, "c1")
    (imported,) = service.import_file(io.BytesIO(exported(source, "c1")), "c1.json")
    assert imported == "c1"  # the id was free
    assert service.branch_ids("c1") == source.branch_ids("c1")  # same branches, same latest-first order
    for app_id in source.branch_ids("c1"):
        assert every_snapshot(service, "c1", app_id) == every_snapshot(source, "c1", app_id)
    tree = lambda s: [(b.app_id, b.forked_from_app_id, b.forked_from_sequence_id) for b in s.branches("c1")]  # noqa: E731
    assert tree(service) == tree(source)
    ratings = lambda s: [(f.app_id, f.sequence_id, f.message_index, f.thumbs_up, f.comment, f.tags)  # noqa: E731
                         for f in s.feedback_of_conversation("c1")]
    assert ratings(service) == ratings(source) and len(ratings(service)) == 2
    assert service.conversation("c1").title == source.conversation("c1").title
    assert service.open("c1").versions.keys() == source.open("c1").versions.keys()


def test_importing_into_the_same_database_gives_new_ids_and_equal_snapshots(service):
    root = branched(service, "c2")
    (copy,) = service.import_file(io.BytesIO(exported(service, "c2")))
    assert copy != "c2" and service.count_conversations() == 2
    originals, copies = service.tree_outline("c2"), service.tree_outline(copy)
    assert [e.depth for e in copies] == [e.depth for e in originals]
    assert not set(service.branch_ids(copy)) & set(service.branch_ids("c2"))  # no shared Burr app ids
    for mine, theirs in zip(originals, copies):
        assert ([s[:3] + (s[3],) for s in every_snapshot(service, copy, theirs.shape.app_id)]
                == every_snapshot(service, "c2", mine.shape.app_id))
    # the copy works like any conversation: the model continues it, History forks it
    assert len(service.open(copy).messages) == len(service.open("c2").messages)
    answered(service, copy, "and on the copy")
    assert service.fork(copy, copies[0].shape.app_id, 1)
    assert service.open("c2", root).messages[-1]["content"] != "and on the copy"


def test_failed_step_keeps_its_reason_through_the_round_trip(tmp_path, llm_server, service):
    remote = make_service(f"sqlite:///{tmp_path}/remote.db", openai_base_url=llm_server.base_url,
                          openai_api_key="sk-test", max_retries=0, request_timeout=5)
    try:
        answered(remote, "c3", "works")
        llm_server.fail_next(500)
        run = remote.send("c3", "fails")
        assert run.wait(10) and run.outcome != "answered"
        failure = remote.open("c3").failure
        assert failure
        service.import_file(io.BytesIO(exported(remote, "c3")))
    finally:
        remote.close()
    view = service.open("c3")
    assert (view.failure, view.failed_step) == (failure, "ai_response")


def test_json_stores_only_what_changed_per_snapshot(source):
    answered(source, "c4", *[f"message {n} " + "x" * 200 for n in range(30)])
    document = json.loads(exported(source, "c4"))
    assert (document["format"], document["version"]) == ("burrow.conversation", 1)
    snapshots = document["branches"][0]["snapshots"]
    assert len(snapshots) == 90
    # each message is written once, in the snapshot that added it (not again in every later snapshot)
    # (the user's message: in the history and as `prompt`; the echo quoting it: in the history and as `response`)
    assert exported(source, "c4").count(b"message 7 ") == 4


def test_a_forked_branch_starts_as_a_change_to_its_parent_at_the_fork(source):
    root = answered(source, "c8", *[f"long message {n} " + "y" * 300 for n in range(10)])
    source.fork("c8", root, 20)
    document = json.loads(exported(source, "c8"))
    parent, child = document["branches"]
    first = child["snapshots"][0]
    assert (child["parent"], child["fork_sequence_id"], first["from_parent"]) == (root, 20, True)
    assert "chat_history" not in first.get("set", {}) and "append" not in first  # no message written again
    assert exported(source, "c8").count(b"long message 3 ") == 4


def test_markdown_has_the_title_role_headings_and_line_breaks(service):
    root = branched(service, "c5")
    text = service.export_markdown("c5", root)
    assert text.startswith(f"# {service.conversation('c5').title}\n\n## User\n\nfirst  \nline two\n\n## Assistant\n")
    assert text.count("## User") == 4 and text.count("## Assistant") == 4


def test_openai_messages_of_the_shown_branch_have_role_and_content_only(service):
    root = branched(service, "c6")
    messages = json.loads(service.export_text("c6", "openai", root))
    assert [m["content"] for m in messages] == [m["content"] for m in service.open("c6", root).messages]
    assert all(set(m) == {"role", "content"} for m in messages)
    latest = service.export_messages("c6")
    assert latest == [{"role": m["role"], "content": m["content"]} for m in service.open("c6").messages]


def test_unknown_conversation_branch_or_format_is_an_input_error(service):
    with pytest.raises(InputError, match="No conversation"):
        service.export_text("nope")
    answered(service, "c7", "hi")
    with pytest.raises(InputError, match="Branch"):
        service.export_messages("c7", "no-such-branch")
    with pytest.raises(InputError, match="Unknown export format"):
        service.export_text("c7", "xml")


def test_archive_holds_every_conversation_and_imports_back(source, service, tmp_path):
    for n in range(3):
        answered(source, f"a{n}", f"conversation {n}")
    branched(source, "a3")
    archive = tmp_path / "all.zip"
    assert source.export_archive(archive) == 4
    with zipfile.ZipFile(archive) as opened:
        assert sorted(opened.namelist()) == ["a0.json", "a1.json", "a2.json", "a3.json"]
    assert sorted(service.import_file(archive)) == ["a0", "a1", "a2", "a3"]
    for app_id in source.branch_ids("a3"):
        assert every_snapshot(service, "a3", app_id) == every_snapshot(source, "a3", app_id)


def test_archive_of_an_empty_database_is_a_valid_empty_zip(service, tmp_path: Path):
    assert service.export_archive(tmp_path / "none.zip") == 0
    assert zipfile.ZipFile(tmp_path / "none.zip").namelist() == []


def test_imports_racing_for_the_same_free_id_never_touch_each_other(source, service):
    """Four imports of one file at once: one keeps the id, the others get new ones, none fails or
    deletes another's conversation (a first save that meets another writer's step picks a new id)."""
    import threading

    branched(source, "race")
    document = exported(source, "race")
    barrier, results, errors = threading.Barrier(4), [], []

    def run() -> None:
        barrier.wait()
        try:
            results.extend(service.import_file(io.BytesIO(document), "race.json"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(set(results)) == 4 and "race" in results
    assert service.count_conversations() == 4
    for app_id in source.branch_ids("race"):
        assert every_snapshot(service, "race", app_id) == every_snapshot(source, "race", app_id)
    for copy in results:
        assert len(service.branch_ids(copy)) == len(source.branch_ids("race"))
